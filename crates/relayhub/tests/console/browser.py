#!/usr/bin/env python3
"""A person using relayhub's web console in a real Chromium (Playwright).

Run by the integration test `console::a_person_uses_the_console_in_chromium_on_a_desktop_and_a_phone`,
which starts the server, prepares the data and passes it as JSON in the
environment variable CONSOLE_CASE:

    base            http://127.0.0.1:PORT
    email/password  a fleet admin of the license
    license_token   the license's bearer token (the producer API)
    device          a device with one message waiting (`message`, its id)
    online_device   a device connected now; `record` a record it sent up
    robot/field     a paired robot with telemetry of that field
    pairings        per viewport: a pairing code, its robot's hostname and id

Once at desktop size and once on a phone, each in a fresh context: sign in,
see the device and its queue (and the queue grow without reloading), edit
its settings, the inbox and the license, pair a robot by its code, see a
robot's chart, every page of the navigation, sign out. Fails on a request to
another host, a script error, an error in the browser's console, a failed
response, or a page wider than the screen. Full-page screenshots of every
page go to CONSOLE_SCREENSHOTS (default <workspace>/target/console-screenshots).
"""

import json
import os
import re
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import expect, sync_playwright

CASE = json.loads(os.environ["CONSOLE_CASE"])
BASE = CASE["base"].rstrip("/")
HOST = urlsplit(BASE).netloc
SHOTS = Path(
    os.environ.get("CONSOLE_SCREENSHOTS") or Path(__file__).resolve().parents[4] / "target" / "console-screenshots"
)
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },
}

expect.set_options(timeout=10_000)


class Visit:
    """One person's visit in a fresh browser context, with all it noticed."""

    def __init__(self, browser, name, label=None):
        # `label` names its screenshots (another script's visits), `name` the viewport.
        viewport = name
        name = label or name
        self.name = name
        self.width = VIEWPORTS[viewport]["viewport"]["width"]
        self.context = browser.new_context(**VIEWPORTS[viewport])
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.problems = []
        self.shots = 0
        self.context.on("request", self.on_request)
        self.page.on("pageerror", lambda err: self.problem(f"script error: {err}"))
        self.page.on("console", self.on_console)
        self.page.on("response", self.on_response)
        for old in SHOTS.glob(f"{name}-*.png"):
            old.unlink()

    def problem(self, text):
        self.problems.append(f"{self.page.url}: {text}")
        print(f"{self.name}: PROBLEM {self.page.url}: {text}", flush=True)

    def on_request(self, request):
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.netloc != HOST:
            self.problem(f"request to another host: {request.method} {request.url}")

    def on_console(self, message):
        if message.type == "error":
            self.problem(f"console error: {message.text} ({message.location})")

    def on_response(self, response):
        if response.status >= 400:
            self.problem(f"{response.status} for {response.request.method} {response.url}")

    def step(self, text):
        print(f"{self.name}: {text}", flush=True)

    def settle(self, label):
        """What every page gets: no sideways scrolling, a screenshot."""
        page = self.page
        page.wait_for_load_state("load")
        sizes = page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
        )
        # A phone may zoom out to fit a page that is too wide (then
        # innerWidth grows with it): the screen's width is the measure.
        if sizes["scroll"] > self.width + 1:
            wide = page.evaluate(
                """(width) => [...document.querySelectorAll('body *')]
                     .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest('.table-wrap'))
                     .slice(0, 5)
                     .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                               + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/ +/g, '.') : '')
                               + ' right=' + Math.round(e.getBoundingClientRect().right))""",
                self.width,
            )
            self.problem(f"the page is {sizes['scroll']} px wide on a {self.width} px screen: {wide}")
        self.shots += 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.name}-{self.shots:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        self.step(f"{label}: {page.url} -> {path}")

    def go(self, path, label):
        response = self.page.goto(BASE + path)
        if response is None or not response.ok:
            self.problem(f"GET {path}: {response.status if response else 'no response'}")
        self.settle(label)

    def sign_in(self):
        page = self.page
        page.goto(BASE + "/console/devices")
        expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/login\?next="))
        self.settle("sign-in")
        page.get_by_label("Email", exact=True).fill(CASE["email"])
        page.get_by_label("Password", exact=True).fill(CASE["password"])
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(BASE + "/console/devices")

    def devices(self, pending):
        page = self.page
        row = page.locator(f'table#devices tr[data-device="{CASE["device"]}"]')
        expect(row.locator("td.pending")).to_have_text(str(pending))
        expect(row.locator(".badge")).to_have_text("Offline")
        online = page.locator(f'table#devices tr[data-device="{CASE["online_device"]}"]')
        expect(online.locator(".badge")).to_have_text("Online")
        self.settle("devices")

    def queue_grows_without_reloading(self):
        """A message the back-office sends now shows up on the open page."""
        page = self.page
        page.evaluate("() => { window.__notReloaded = true; }")
        request = urllib.request.Request(
            f"{BASE}/api/v1/devices/{CASE['device']}/messages",
            data=json.dumps({"text": "sent while the page was open"}).encode(),
            headers={"Authorization": f"Bearer {CASE['license_token']}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202, answer.status
        row = page.locator(f'table#devices tr[data-device="{CASE["device"]}"]')
        expect(row.locator("td.pending")).to_have_text("2")
        assert page.evaluate("() => window.__notReloaded === true"), "the page was reloaded"
        self.step("the queue grew on the open page")

    def device(self):
        page = self.page
        row = page.locator(f'table#devices tr[data-device="{CASE["device"]}"]')
        row.get_by_role("link").first.click()
        expect(page).to_have_url(f"{BASE}/console/devices/{CASE['device']}")
        expect(page.locator("table#pending")).to_contain_text(CASE["message"])
        self.settle("device")
        settings = page.get_by_label("Settings (JSON)", exact=True)
        settings.fill('{"volume": 3, "greeting": "' + self.name + '"}')
        page.get_by_role("button", name="Save settings", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("saved")
        saved = json.loads(page.get_by_label("Settings (JSON)", exact=True).input_value())
        assert saved.get("greeting") == self.name and saved.get("volume") == 3, saved
        self.settle("device-settings-saved")

    def inbox_and_license(self):
        page = self.page
        self.go("/console/inbox", "inbox")
        expect(page.locator("table#inbox")).to_contain_text(CASE["online_device"])
        self.go("/console/license", "license")
        expect(page.locator("dl.facts").first).to_be_visible()

    def pair(self, pairing):
        page = self.page
        self.go("/console/pair", "pair")
        page.get_by_label("Pairing code", exact=True).fill(pairing["code"])
        page.get_by_role("button", name="Look up", exact=True).click()
        facts = page.locator("dl.facts")
        expect(facts.locator("dt", has_text="Hostname")).to_be_visible()
        hostname = facts.locator("dt:text-is('Hostname') + dd")
        expect(hostname).to_contain_text(pairing["hostname"])
        # The address the robot claims, and the one the server saw it come from.
        expect(facts.locator("dt:text-is('Address it gives') + dd")).to_contain_text("127.0.0.1")
        expect(facts.locator("dt:text-is('Address seen by the server') + dd")).to_contain_text("127.0.0.1")
        self.settle("pair-look-up")
        page.get_by_role("button", name="Confirm pairing", exact=True).click()
        expect(page).to_have_url(re.compile(re.escape(f"{BASE}/console/robots/{pairing['robot']}") + r"(\?.*)?$"))
        self.settle("paired-robot")

    def robot_chart(self):
        page = self.page
        self.go("/console/robots", "robots")
        self.go(f"/console/robots/{CASE['robot']}", "robot")
        figure = page.locator("figure", has=page.locator("figcaption", has_text=CASE["field"]))
        line = figure.locator("svg.chart polyline.line").first
        expect(line).to_have_attribute("points", re.compile(r"\S"))
        points = line.get_attribute("points").split()
        assert len(points) >= 2, f"a line of {len(points)} points"

    def navigation(self):
        """Every page the navigation offers opens cleanly."""
        page = self.page
        self.go("/console", "home")
        hrefs = page.locator("header nav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        for href in hrefs:
            if href and href.startswith("/console"):
                self.go(href, "nav" + href.replace("/console", "").replace("/", "-"))

    def sign_out(self):
        page = self.page
        page.get_by_role("button", name="Sign out", exact=True).click()
        expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/login"))
        self.settle("signed-out")
        page.goto(BASE + "/console/devices")
        expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/login\?next="))


def visited(browser, viewport, label, steps):
    """`steps(visit)` in a fresh visit; what went wrong, with a screenshot of it."""
    visit = Visit(browser, viewport, label)
    try:
        steps(visit)
    except Exception as err:  # noqa: BLE001 - any failure is reported with a screenshot
        visit.problem(f"{type(err).__name__}: {err}")
        try:
            visit.page.screenshot(path=str(SHOTS / f"{visit.name}-FAILED.png"), full_page=True)
        except Exception:  # noqa: BLE001
            pass
    finally:
        visit.context.close()
    if not visit.problems:
        print(f"{viewport}: done", flush=True)
    return visit.problems


def run_all(each, cases):
    """`each(browser, case)` for every case in one Chromium; exits 1 on any problem."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
        try:
            for case in cases:
                problems += each(browser, case)
        finally:
            browser.close()
    if problems:
        print("\n".join(["PROBLEMS:"] + problems), flush=True)
        sys.exit(1)


def run(browser, pairing):
    name = pairing["viewport"]

    def steps(visit):
        visit.sign_in()
        if name == "desktop":
            visit.devices(pending=1)
            visit.queue_grows_without_reloading()
        else:
            visit.devices(pending=2)
        visit.device()
        visit.inbox_and_license()
        visit.pair(pairing)
        visit.robot_chart()
        visit.navigation()
        visit.sign_out()

    return visited(browser, name, None, steps)


if __name__ == "__main__":
    run_all(run, CASE["pairings"])
