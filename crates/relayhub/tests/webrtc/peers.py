#!/usr/bin/env python3
"""Two real WebRTC peers (aiortc, from PyPI) that set up a call through
relayhub's /ws/signal, open a data channel and exchange a message.

    peers.py WS_URL [WS_URL_FOR_BOB] [--relay-only]

The caller connects to WS_URL, the callee to WS_URL_FOR_BOB if given (say,
another node of the same cluster), else to WS_URL too.

With --relay-only the peers may only use TURN relay candidates, built from
the iceServers relayhub hands out in userConnect: the call then works only
if coturn accepts relayhub's time-limited credentials.
Prints what it saw; exits 0 on success.
"""
import asyncio
import json
import sys

import aioice.ice

# aioice leaves loopback out of its host candidates; on a test machine the
# peers only have loopback.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]

import websockets  # noqa: E402
from aiortc import (  # noqa: E402
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)


async def join(url, user):
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"route": "ADD_USER", "userId": user, "data": {"name": user}}))
    hello = await route(ws, "userConnect")
    return ws, hello


async def route(ws, name):
    """The data of the next frame with this route (others are skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame.get("route") == "error":
            raise RuntimeError(f"relayhub refused a frame: {frame['data']}")
        if frame.get("route") == name:
            return frame["data"]


def configuration(hello, relay_only):
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in hello.get("iceServers", [])
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


async def main(url, url_b, relay_only):
    ws_a, hello_a = await join(url, "py-alice")
    ws_b, hello_b = await join(url_b, "py-bob")
    if relay_only:
        assert hello_a.get("iceServers"), "relayhub sent no TURN credentials"
        print("turn username:", hello_a["iceServers"][-1]["username"])
    caller = RTCPeerConnection(configuration(hello_a, relay_only))
    callee = RTCPeerConnection(configuration(hello_b, relay_only))
    loop = asyncio.get_running_loop()
    reply = loop.create_future()

    @callee.on("datachannel")
    def on_datachannel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send("pong: " + message)

    channel = caller.createDataChannel("chat")

    @channel.on("open")
    def on_open():
        channel.send("hello over webrtc")

    @channel.on("message")
    def on_reply(message):
        if not reply.done():
            reply.set_result(message)

    # aiortc gathers every candidate before it returns the description.
    await caller.setLocalDescription(await caller.createOffer())
    offer = {"candidateId": "py-bob", "sdp": caller.localDescription.sdp, "streamIds": {}}
    await ws_a.send(json.dumps({"route": "OFFER", "userId": "py-alice", "data": offer}))
    call = await route(ws_b, "/call")
    await callee.setRemoteDescription(RTCSessionDescription(sdp=call["sdp"], type="offer"))
    await callee.setLocalDescription(await callee.createAnswer())
    answer = {"answer": callee.localDescription.sdp, "streamIds": {}}
    await ws_b.send(json.dumps({"route": "ANSWER", "userId": "py-bob", "data": answer}))
    accepted = await route(ws_a, "/acceptCall")
    await caller.setRemoteDescription(RTCSessionDescription(sdp=accepted["answer"], type="answer"))
    await route(ws_a, "/connect")
    print("signaling: connected")

    message = await asyncio.wait_for(reply, 30)
    print("data channel:", message)
    if relay_only:
        relayed = "typ relay" in caller.localDescription.sdp
        print("relay candidates:", "yes" if relayed else "no")
        assert relayed
    assert message == "pong: hello over webrtc"

    await ws_a.send(json.dumps({"route": "HANGUP", "userId": "py-alice", "data": {}}))
    hangup = await route(ws_b, "/hangup")
    print("hangup:", hangup.get("reason"))
    for pc in (caller, callee):
        await pc.close()
    for ws in (ws_a, ws_b):
        await ws.close()


if __name__ == "__main__":
    urls = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(urls[0], urls[-1], "--relay-only" in sys.argv[1:]))
