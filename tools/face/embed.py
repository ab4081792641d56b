#!/usr/bin/env python3
"""Face embeddings for relayhub: the test fixture, and an example client.

Embeddings are dlib's 128-d face descriptors
(dlib_face_recognition_resnet_model_v1, through the face_recognition
package), computed on faces found by dlib's HOG detector.

Install (a virtualenv outside the repository, e.g. /work/face-venv):

    python3 -m venv /work/face-venv && . /work/face-venv/bin/activate
    pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 numpy pillow
    pip install --no-deps face-recognition==1.3.0
    # face_recognition_models imports pkg_resources (part of setuptools, which
    # is phasing it out; Python 3.12+ venvs have no setuptools at all):
    pip install "setuptools<81"

(dlib-bin provides the `dlib` module under another distribution name, so
`pip check` reports face-recognition's dlib requirement as missing: harmless.)

Commands:

    embed.py fixture [--out PATH] [--cache DIR] [--offline]
        Fetch the source photos from PyPI packages (pip download, no install;
        kept under --cache), check their SHA-256, and write
        crates/rail/tests/fixtures/faces.json: for each person, the embedding
        of the face in each distinct photo ("kind": "photo") and of
        augmented crops of one photo ("kind": "augmented": mirror, other
        crop + scale, darker + JPEG re-compression, rotation). Prints the
        distance statistics at the end.

    embed.py stats [PATH]
        Norms and same/different-person distances of a faces.json.

    embed.py embed PHOTO
        Print the embedding of the largest face in PHOTO as JSON.

    embed.py identify PHOTO --url http://127.0.0.1:8080 --token TOKEN
        POST {"embedding": [...]} (largest face in PHOTO) to
        URL/face_api/identify with "Authorization: Bearer TOKEN" and print
        the answer: {"user_id", "distance"}, or the 404 no_match body.
        Exit status 0 on a match, 1 on no_match, 2 on any other error.

The HTTP client uses only the standard library (urllib).
"""

import argparse
import glob
import hashlib
import io
import itertools
import json
import math
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "crates", "rail", "tests", "fixtures", "faces.json")
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "relayhub-face-fixtures")

# Wheels are platform-specific only for their compiled parts; the photos are
# the same in every wheel, so one fixed platform is downloaded everywhere.
WHEEL_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                  "--python-version", "3.11",
                  "--implementation", "cp", "--abi", "cp311"]

# Each package: how to download it, and which photos to take out of it.
PACKAGES = {
    "insightface": {
        "spec": "insightface==2.1",
        "pip": ["--only-binary", ":all:"],
        "file": "insightface-2.1-py3-none-any.whl",
        "license": "MIT (library code, per its README); no separate statement for the images",
    },
    "face_recognition": {
        "spec": "face_recognition==1.3.0",
        # The photos are only in the source distribution (tests/test_images).
        "pip": ["--no-binary", "face_recognition"],
        "file": "face_recognition-1.3.0.tar.gz",
        "license": "MIT (the package's LICENSE); no separate statement for the images",
    },
    "matplotlib": {
        "spec": "matplotlib==3.11.2",
        "pip": ["--only-binary", ":all:"] + WHEEL_PLATFORM,
        "file": "matplotlib-3.11.2-cp311-*.whl",
        "license": "matplotlib license (PSF-style); no separate statement for the image",
    },
    "scikit-image": {
        "spec": "scikit-image==0.26.0",
        "pip": ["--only-binary", ":all:"] + WHEEL_PLATFORM,
        "file": "scikit_image-0.26.0-cp311-*.whl",
        "license": "skimage.data.astronaut docstring: 'No known copyright restrictions, "
                   "released into the public domain' (NASA photo of Eileen Collins)",
    },
}

# Each photo: its package, its path in the package archive, its SHA-256, and
# the faces to take: "faces" is how many detections to keep (best score
# first; kept ones are then ordered left to right) and "persons" names them.
PHOTOS = [
    {"photo": "obama.jpg", "package": "face_recognition",
     "member": "face_recognition-1.3.0/tests/test_images/obama.jpg",
     "sha256": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
     "persons": ["p1"], "augment": True},
    {"photo": "obama2.jpg", "package": "face_recognition",
     "member": "face_recognition-1.3.0/tests/test_images/obama2.jpg",
     "sha256": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
     "persons": ["p1"], "augment": False},
    {"photo": "obama3.jpg", "package": "face_recognition",
     "member": "face_recognition-1.3.0/tests/test_images/obama3.jpg",
     "sha256": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
     "persons": ["p1"], "augment": False},
    {"photo": "biden.jpg", "package": "face_recognition",
     "member": "face_recognition-1.3.0/tests/test_images/biden.jpg",
     "sha256": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
     "persons": ["p2"], "augment": True},
    {"photo": "Tom_Hanks_54745.png", "package": "insightface",
     "member": "insightface/data/images/Tom_Hanks_54745.png",
     "sha256": "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
     "persons": ["p3"], "augment": True},
    {"photo": "grace_hopper.jpg", "package": "matplotlib",
     "member": "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "sha256": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
     "persons": ["p4"], "augment": True},
    # astronaut.png: the second, weaker detection is the mission patch.
    {"photo": "astronaut.png", "package": "scikit-image",
     "member": "skimage/data/astronaut.png",
     "sha256": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
     "persons": ["p5"], "augment": True},
    # t1.jpg: six people around a table, one face each, left to right.
    {"photo": "t1.jpg", "package": "insightface",
     "member": "insightface/data/images/t1.jpg",
     "sha256": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
     "persons": ["p6", "p7", "p8", "p9", "p10", "p11"], "augment": True},
]

PERSONS = {
    "p1": "face_recognition tests/test_images obama.jpg, obama2.jpg, obama3.jpg (three distinct photos)",
    "p2": "face_recognition tests/test_images biden.jpg",
    "p3": "insightface data/images Tom_Hanks_54745.png (112x112 aligned crop)",
    "p4": "matplotlib sample_data grace_hopper.jpg",
    "p5": "scikit-image data astronaut.png (Eileen Collins)",
    "p6": "insightface t1.jpg, face 1 of 6 from the left",
    "p7": "insightface t1.jpg, face 2 of 6 from the left",
    "p8": "insightface t1.jpg, face 3 of 6 from the left",
    "p9": "insightface t1.jpg, face 4 of 6 from the left",
    "p10": "insightface t1.jpg, face 5 of 6 from the left",
    "p11": "insightface t1.jpg, face 6 of 6 from the left",
}

UPSAMPLE = 1  # HOG detector upsampling: finds faces down to about 40 px.
_DETECTOR = None


def _face_libs():
    try:
        import dlib  # noqa: F401
        import face_recognition
        import numpy
        from PIL import Image
    except ImportError as e:
        sys.exit(f"embed.py: {e}; see the install lines at the top of {__file__}")
    return face_recognition, numpy, Image


# ---------------------------------------------------------------- detection

def detect(img):
    """All HOG detections in an RGB array: [(score, (top, right, bottom, left))]."""
    global _DETECTOR
    if _DETECTOR is None:
        import dlib
        _DETECTOR = dlib.get_frontal_face_detector()
    rects, scores, _ = _DETECTOR.run(img, UPSAMPLE, 0)
    h, w = img.shape[:2]
    out = []
    for r, s in zip(rects, scores):
        box = (max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0))
        out.append((s, box))
    return out


def encode(img, box):
    face_recognition, _, _ = _face_libs()
    [enc] = face_recognition.face_encodings(img, known_face_locations=[box], num_jitters=1,
                                            model="small")
    return [float(x) for x in enc]


def largest_face(img):
    dets = detect(img)
    if not dets:
        return None
    return max(dets, key=lambda d: (d[1][1] - d[1][3]) * (d[1][2] - d[1][0]))[1]


def load_rgb(path_or_bytes):
    _, np, Image = _face_libs()
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    im = Image.open(src)
    im.load()
    return np.array(im.convert("RGB"))


# ---------------------------------------------------------------- sources

def fetch_package(name, cache, offline):
    pkg = PACKAGES[name]
    pattern = os.path.join(cache, pkg["file"])
    found = sorted(glob.glob(pattern))
    if found:
        return found[0]
    if offline:
        sys.exit(f"embed.py: no {pattern} and --offline given")
    os.makedirs(cache, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", cache,
           *pkg["pip"], pkg["spec"]]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"embed.py: pip left no {pattern}")
    return found[0]


def read_member(archive, member):
    if archive.endswith(".whl") or archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        return t.extractfile(member).read()


def load_photos(cache, offline):
    photos = []
    for spec in PHOTOS:
        archive = fetch_package(spec["package"], cache, offline)
        data = read_member(archive, spec["member"])
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec["sha256"]:
            sys.exit(f"embed.py: {spec['member']} in {archive} has SHA-256 {digest}, "
                     f"expected {spec['sha256']}")
        photos.append((spec, data))
    return photos


# ---------------------------------------------------------------- augmentations

def context_crop(img, box, margin, shift=(0.0, 0.0)):
    """The face box grown by `margin` box sizes on each side, moved by `shift`
    box sizes (down, right); parts outside the photo are edge-padded."""
    _, np, _ = _face_libs()
    top, right, bottom, left = box
    bh, bw = bottom - top, right - left
    t = int(round(top - margin * bh + shift[0] * bh))
    b = int(round(bottom + margin * bh + shift[0] * bh))
    l = int(round(left - margin * bw + shift[1] * bw))
    r = int(round(right + margin * bw + shift[1] * bw))
    h, w = img.shape[:2]
    pad = ((max(0, -t), max(0, b - h)), (max(0, -l), max(0, r - w)), (0, 0))
    padded = np.pad(img, pad, mode="edge")
    t += pad[0][0]
    b += pad[0][0]
    l += pad[1][0]
    r += pad[1][0]
    return padded[t:b, l:r].copy()


def to_pil(a):
    _, _, Image = _face_libs()
    return Image.fromarray(a)


def from_pil(im):
    _, np, _ = _face_libs()
    return np.array(im.convert("RGB"))


def aug_mirror(img, box):
    _, np, _ = _face_libs()
    return np.ascontiguousarray(context_crop(img, box, 1.0)[:, ::-1])


def aug_crop_scale(img, box):
    # Another crop: tighter, off-centre, and scaled down to 60 %.
    _, _, Image = _face_libs()
    c = to_pil(context_crop(img, box, 0.6, shift=(0.15, -0.2)))
    return from_pil(c.resize((max(1, round(c.width * 0.6)), max(1, round(c.height * 0.6))),
                             Image.BICUBIC))


def aug_dark_jpeg(img, box):
    from PIL import ImageEnhance
    c = ImageEnhance.Brightness(to_pil(context_crop(img, box, 1.0))).enhance(0.6)
    buf = io.BytesIO()
    c.save(buf, format="JPEG", quality=35)
    return load_rgb(buf.getvalue())


def aug_rotate(img, box):
    _, _, Image = _face_libs()
    c = to_pil(context_crop(img, box, 1.0))
    return from_pil(c.rotate(-10, resample=Image.BICUBIC))


AUGMENTATIONS = [
    ("mirror", "horizontal mirror of a crop with one face-width margin", aug_mirror),
    ("crop-b-scale0.6", "tighter off-centre crop (0.6 margin, shifted), resized to 60 %",
     aug_crop_scale),
    ("dark-jpeg35", "crop, brightness x0.6, JPEG quality 35", aug_dark_jpeg),
    # Clockwise: 10 degrees counter-clockwise loses two t1.jpg faces to the detector.
    ("rotate-cw10", "crop rotated 10 degrees clockwise (corners black)", aug_rotate),
]


def centre_face(img):
    """The detection nearest the centre of an augmented crop."""
    dets = detect(img)
    if not dets:
        return None
    h, w = img.shape[:2]

    def dist(d):
        t, r, b, l = d[1]
        return ((t + b) / 2 - h / 2) ** 2 + ((l + r) / 2 - w / 2) ** 2
    return min(dets, key=dist)[1]


# ---------------------------------------------------------------- fixture

def build_fixture(cache, offline):
    faces = []
    for spec, data in load_photos(cache, offline):
        img = load_rgb(data)
        dets = sorted(detect(img), key=lambda d: -d[0])[: len(spec["persons"])]
        if len(dets) != len(spec["persons"]):
            sys.exit(f"embed.py: {spec['photo']}: found {len(dets)} faces, "
                     f"expected {len(spec['persons'])}")
        dets.sort(key=lambda d: d[1][3])  # left to right
        for person, (_, box) in zip(spec["persons"], dets):
            faces.append({"person": person, "photo": spec["photo"], "variant": "photo",
                          "kind": "photo", "embedding": encode(img, box)})
            print(f"{person:4} {spec['photo']:22} photo  box={box}", file=sys.stderr)
            if not spec["augment"]:
                continue
            for name, _, fn in AUGMENTATIONS:
                a = fn(img, box)
                abox = centre_face(a)
                if abox is None:
                    print(f"{person:4} {spec['photo']:22} {name}: no face found, skipped",
                          file=sys.stderr)
                    continue
                faces.append({"person": person, "photo": spec["photo"], "variant": name,
                              "kind": "augmented", "embedding": encode(a, abox)})
                print(f"{person:4} {spec['photo']:22} {name}  {a.shape[1]}x{a.shape[0]} "
                      f"box={abox}", file=sys.stderr)
    return faces


def write_fixture(faces, out):
    pkgs = sorted({p["package"] for p in PHOTOS})
    norms = [_norm(f["embedding"]) for f in faces]
    head = {
        "model": "dlib_face_recognition_resnet_model_v1",
        "dimension": 128,
        "source": (
            "tools/face/embed.py fixture: photos taken out of PyPI packages ("
            + ", ".join(PACKAGES[p]["spec"] for p in pkgs)
            + "), faces found by dlib's HOG frontal face detector (upsample 1), "
            "embeddings by face_recognition 1.3.0 face_encodings (5-point landmarks, "
            "num_jitters=1) with face-recognition-models 0.3.0 on dlib-bin 20.0.1.post1. "
            "Embeddings are raw, as dlib returns them (not unit-normalised: norms here "
            f"{min(norms):.2f}-{max(norms):.2f}; dlib's usual 0.6 threshold applies to raw "
            "vectors), rounded to 6 decimals. "
            "kind 'photo' = a face as found in a distinct photo; kind 'augmented' = a "
            "synthetic variant of the 'photo' entry from the same photo (see 'variants')."
        ),
        "variants": {"photo": "the face as detected in the original photo",
                     **{n: d for n, d, _ in AUGMENTATIONS}},
        "photos": {p["photo"]: {"package": PACKAGES[p["package"]]["spec"], "path": p["member"],
                                "sha256": p["sha256"]} for p in PHOTOS},
        "persons": PERSONS,
    }
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "faces": [')
    rows = []
    for f in faces:
        emb = "[" + ",".join(_fmt(x) for x in f["embedding"]) + "]"
        meta = {k: f[k] for k in ("person", "photo", "variant", "kind")}
        rows.append("    " + json.dumps(meta)[:-1] + f', "embedding": {emb}}}')
    lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    json.load(open(out))  # it parses


def _fmt(x):
    s = f"{round(x, 6):.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# ---------------------------------------------------------------- stats

def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _unit(v):
    n = _norm(v)
    return [x / n for x in v]


def _dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def stats(faces):
    norms = [_norm(f["embedding"]) for f in faces]
    print(f"{len(faces)} faces, {len({f['person'] for f in faces})} persons; raw norms "
          f"min {min(norms):.4f} max {max(norms):.4f}")
    for space, conv in (("raw", lambda v: v), ("unit", _unit)):
        vs = [conv(f["embedding"]) for f in faces]
        same, diff, same_photo = [], [], []
        for i, j in itertools.combinations(range(len(faces)), 2):
            d = _dist(vs[i], vs[j])
            a, b = faces[i], faces[j]
            if a["person"] == b["person"]:
                same.append((d, a, b))
                if a["photo"] != b["photo"]:
                    same_photo.append((d, a, b))
            else:
                diff.append((d, a, b))
        mx = max(same, key=lambda t: t[0])
        mn = min(diff, key=lambda t: t[0])
        lbl = lambda f: f"{f['person']}/{f['photo']}/{f['variant']}"  # noqa: E731
        print(f"[{space}] same-person pairs {len(same)}: max {mx[0]:.4f} "
              f"({lbl(mx[1])} vs {lbl(mx[2])}), mean {sum(t[0] for t in same)/len(same):.4f}")
        if same_photo:
            print(f"[{space}]   of which across distinct photos {len(same_photo)}: "
                  f"max {max(t[0] for t in same_photo):.4f}")
        print(f"[{space}] different-person pairs {len(diff)}: min {mn[0]:.4f} "
              f"({lbl(mn[1])} vs {lbl(mn[2])}), mean {sum(t[0] for t in diff)/len(diff):.4f}")
        photo_diff = [t[0] for t in diff if t[1]["kind"] == t[2]["kind"] == "photo"]
        print(f"[{space}]   of which between two 'photo' entries {len(photo_diff)}: "
              f"min {min(photo_diff):.4f}")
        print(f"[{space}] midpoint {(mx[0] + mn[0]) / 2:.4f}")


# ---------------------------------------------------------------- client

def embed_photo(path):
    img = load_rgb(path)
    box = largest_face(img)
    if box is None:
        sys.exit(f"embed.py: no face found in {path}")
    return encode(img, box)


def identify(photo, url, token, timeout):
    body = json.dumps({"embedding": [round(x, 6) for x in embed_photo(photo)]}).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/face_api/identify", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        print(f"HTTP {e.code}: {text}" if e.code != 404 else text)
        return 1 if e.code == 404 else 2
    except urllib.error.URLError as e:
        print(f"embed.py: {url}: {e.reason}", file=sys.stderr)
        return 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture", help="write the faces.json test fixture")
    f.add_argument("--out", default=DEFAULT_OUT)
    f.add_argument("--cache", default=DEFAULT_CACHE,
                   help="where the downloaded packages are kept (default %(default)s)")
    f.add_argument("--offline", action="store_true",
                   help="use only packages already in --cache")
    s = sub.add_parser("stats", help="distance statistics of a faces.json")
    s.add_argument("path", nargs="?", default=DEFAULT_OUT)
    e = sub.add_parser("embed", help="print the embedding of the largest face in a photo")
    e.add_argument("photo")
    i = sub.add_parser("identify", help="ask a relayhub server who is in a photo")
    i.add_argument("photo")
    i.add_argument("--url", default="http://127.0.0.1:8080")
    i.add_argument("--token", required=True)
    i.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args(argv)

    if a.cmd == "fixture":
        faces = build_fixture(a.cache, a.offline)
        write_fixture(faces, a.out)
        print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)", file=sys.stderr)
        stats(json.load(open(a.out))["faces"])
    elif a.cmd == "stats":
        stats(json.load(open(a.path))["faces"])
    elif a.cmd == "embed":
        print(json.dumps([round(x, 6) for x in embed_photo(a.photo)]))
    elif a.cmd == "identify":
        return identify(a.photo, a.url, a.token, a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
