"""The faces data set: cartoon faces drawn offline from options, so every attribute label is exact.

The study notes' ``vae_faces`` learns CelebA, which cannot be downloaded here. DiceBear's ``avataaars``
style (free for personal and commercial use; its licence line is in every manifest) draws colour faces
from options instead: glasses, facial hair, 12 mouths, hats and hair styles, skin and hair colours. A
face's attributes are read from the options it was drawn with, never guessed by a labeller.

Face ``i`` of a split is drawn from its own seed, so one face renders the same alone (tests, a
``--limit``) as inside the whole set. The whole set is rendered once into the cache (``ganexport.cache.cache_dir()``,
about 6 minutes on one core), with a manifest of every face's options beside it:

    >>> from ganexport import faces
    >>> faces.face_options("test", 0)["seed"]
    'test-0'
    >>> faces.render(faces.face_options("test", 0)).shape  # doctest: +SKIP
    (64, 64, 3)

Anyone can draw faces the project never saw with ``render(options)``: DiceBear options (the frame below
included) rasterised with cairosvg at 64x64 and flattened onto ``BACKGROUND``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import io
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ganexport import catalog

DATASET = "faces"
STYLE = "avataaars"
SIDE = 64
# The style's canvas is 280 units with the face ~130 wide; at 1.4x, moved down by 10% of the canvas, head and
# shoulders fill the square (the whole canvas would leave a face 30 pixels wide and a mouth of 8).
FRAME = {"scale": 1.4, "translateY": 10}
BACKGROUND = (226, 232, 240)  # the style's background is transparent: flattened onto this colour
COUNTS = {"train": 30_000, "test": 2_000}
SPLIT_CODE = {"train": 0, "test": 1}
VERSION = 1  # of the drawing recipe below; the cache is keyed by it

# Variants of the components that carry an attribute (the style's own names).
GLASSES = ("kurt", "prescription01", "prescription02", "round", "sunglasses", "wayfarers")
BEARDS = ("beardLight", "beardMajestic", "beardMedium")
MOUSTACHES = ("moustacheFancy", "moustacheMagnum")
HATS = ("hat", "hijab", "turban", "winterHat02", "winterHat03", "winterHat04", "winterHat1")
HAIR = ("bigHair", "bob", "bun", "curly", "curvy", "dreads", "dreads01", "dreads02", "frida", "frizzle", "fro",
        "froBand", "longButNotTooLong", "miaWallace", "shaggy", "shaggyMullet", "shavedSides", "shortCurly",
        "shortFlat", "shortRound", "shortWaved", "sides", "straight01", "straight02", "straightAndStrand",
        "theCaesar", "theCaesarAndSidePart")
MOUTHS = ("concerned", "default", "disbelief", "eating", "grimace", "sad", "screamOpen", "serious", "smile",
          "tongue", "twinkle", "vomit")
EYES = ("closed", "cry", "default", "eyeRoll", "happy", "hearts", "side", "squint", "surprised", "wink",
        "winkWacky", "xDizzy")
EYEPATCH = "eyepatch"

# How often each is drawn. Independent draws, so an attribute's mean latent difference is that attribute's alone;
# shares near a half (where the component allows) so a held-out split has hundreds of faces with and without each.
SHARES = {"smiling": 0.4, "glasses": 0.4, "eyepatch": 0.05, "beard": 0.25, "moustache": 0.15, "hat": 0.25,
          "bald": 0.1, "eyes_closed": 0.2}


class FacesError(Exception):
    """The renderer is missing or failed; one line that says what to install."""


# --------------------------------------------------------------------------- options and labels


def face_options(split: str, index: int) -> dict[str, Any]:
    """The DiceBear options of face ``index`` of ``split``: every attribute drawn here from the face's own
    seeded generator; colours, clothes, eyebrows and the rest left to DiceBear's seeded choice."""
    rng = np.random.default_rng([VERSION, SPLIT_CODE[split], index])
    pick = lambda names: [names[int(rng.integers(len(names)))]]  # noqa: E731
    opts: dict[str, Any] = {"seed": f"{split}-{index}", **FRAME}
    smiling = rng.random() < SHARES["smiling"]
    opts["mouthVariant"] = ["smile"] if smiling else pick(tuple(m for m in MOUTHS if m != "smile"))
    u = rng.random()
    if u < SHARES["glasses"] + SHARES["eyepatch"]:
        opts.update(accessoriesProbability=100,
                    accessoriesVariant=pick(GLASSES) if u < SHARES["glasses"] else [EYEPATCH])
    else:
        opts["accessoriesProbability"] = 0
    u = rng.random()
    if u < SHARES["beard"] + SHARES["moustache"]:
        opts.update(facialHairProbability=100, facialHairVariant=pick(BEARDS if u < SHARES["beard"] else MOUSTACHES))
    else:
        opts["facialHairProbability"] = 0
    u = rng.random()
    if u < SHARES["bald"]:
        opts["topProbability"] = 0
    else:
        opts.update(topProbability=100, topVariant=pick(HATS if u < SHARES["bald"] + SHARES["hat"] else HAIR))
    closed = rng.random() < SHARES["eyes_closed"]
    opts["eyesVariant"] = ["closed"] if closed else pick(tuple(e for e in EYES if e != "closed"))
    return opts


def _shown(opts: dict[str, Any], component: str) -> set[str]:
    """The variants ``component`` may be drawn with under ``opts`` (empty when its probability is 0)."""
    if opts.get(f"{component}Probability", 100) == 0:
        return set()
    return set(opts.get(f"{component}Variant") or ())


def attributes(opts: dict[str, Any]) -> np.ndarray:
    """The attribute labels (``catalog.DATASETS["faces"].attribute_names``, in order) of a face's options.

    Exact only for options that name one variant of each labelled component (as ``face_options`` does)."""
    shown = {c: _shown(opts, c) for c in ("mouth", "accessories", "facialHair", "top", "eyes")}
    found = {
        "smiling": shown["mouth"] == {"smile"},
        "glasses": bool(shown["accessories"]) and shown["accessories"] <= set(GLASSES),
        "beard": bool(shown["facialHair"]) and shown["facialHair"] <= set(BEARDS),
        "moustache": bool(shown["facialHair"]) and shown["facialHair"] <= set(MOUSTACHES),
        "hat": bool(shown["top"]) and shown["top"] <= set(HATS),
        "bald": opts.get("topProbability", 100) == 0,
        "eyes_closed": shown["eyes"] == {"closed"},
    }
    return np.array([found[name] for name in attribute_names()], np.uint8)


def attribute_names() -> tuple[str, ...]:
    return catalog.DATASETS[DATASET].attribute_names


# --------------------------------------------------------------------------- drawing


@lru_cache(maxsize=1)
def _style():
    try:
        from dicebear import Style
    except ImportError:
        raise FacesError("the faces data set needs DiceBear: pip install 'ganexport[train]' "
                         "(dicebear-core, dicebear-styles, cairosvg)") from None
    return Style(json.loads((importlib.resources.files("dicebear_styles") / f"{STYLE}.json").read_text()))


def style_meta() -> dict[str, Any]:
    """The style's licence, creator and source, as its own file states them."""
    return json.loads((importlib.resources.files("dicebear_styles") / f"{STYLE}.json").read_text())["meta"]


def render(opts: dict[str, Any], side: int = SIDE) -> np.ndarray:
    """One face as uint8 side x side x 3: DiceBear's SVG for ``opts``, rasterised by cairosvg, flattened onto
    ``BACKGROUND``."""
    from dicebear import Avatar
    from PIL import Image

    try:
        import cairosvg
    except (ImportError, OSError) as e:  # OSError: the cairo library itself is missing
        raise FacesError(f"cannot load cairosvg ({e}); pip install cairosvg and apt-get install libcairo2") from None
    png = cairosvg.svg2png(bytestring=str(Avatar(_style(), opts)).encode(), output_width=side, output_height=side)
    with Image.open(io.BytesIO(png)) as im:
        face = im.convert("RGBA")
    page = Image.new("RGBA", face.size, (*BACKGROUND, 255))
    return np.asarray(Image.alpha_composite(page, face).convert("RGB"), dtype=np.uint8)


def example(split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Face ``index`` of ``split`` (uint8 HWC) and its labels, drawn alone (the demo's "pick a held-out face")."""
    if split not in COUNTS or not 0 <= index < COUNTS[split]:
        raise FacesError(f"faces: the {split} split has faces 0..{COUNTS.get(split, 0) - 1}, not {index}")
    opts = face_options(split, index)
    return render(opts), attributes(opts)


# --------------------------------------------------------------------------- the data set


def cache_root() -> Path:
    from ganexport.cache import cache_dir

    return cache_dir() / "faces"


def _paths(split: str) -> tuple[Path, Path]:
    stem = f"v{VERSION}-{split}-{COUNTS[split]}"
    return cache_root() / f"{stem}.npz", cache_root() / f"{stem}.manifest.jsonl"


def draw(split: str, indices, progress: str | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Faces ``indices`` of ``split``: images (N x 64 x 64 x 3), labels (N x A) and their options."""
    indices = [int(i) for i in indices]
    images = np.empty((len(indices), SIDE, SIDE, 3), np.uint8)
    labels = np.empty((len(indices), len(attribute_names())), np.uint8)
    options = []
    for k, i in enumerate(tqdm(indices, desc=progress, unit="face", disable=None if progress else True,
                               mininterval=5)):
        opts = face_options(split, i)
        images[k], labels[k] = render(opts), attributes(opts)
        options.append(opts)
    return images, labels, options


def build_cache(split: str) -> Path:
    """Render every face of ``split`` into the cache, with its manifest; said in one line with progress."""
    npz, manifest = _paths(split)
    npz.parent.mkdir(parents=True, exist_ok=True)
    tqdm.write(f"faces: rendering the {COUNTS[split]:,} {split} faces once into {npz.parent} "
               f"({STYLE}, {SIDE}x{SIDE}; about 12 ms a face)")
    images, labels, options = draw(split, range(COUNTS[split]), progress=f"faces {split}")
    write_manifest(manifest, split, options, labels)
    tmp = npz.with_name(npz.name + ".tmp.npz")
    np.savez_compressed(tmp, images=images, attributes=labels)
    os.replace(tmp, npz)
    return npz


def write_manifest(path: Path, split: str, options: list[dict], labels: np.ndarray) -> None:
    """One JSON line about the set (style, licence, versions, how faces are drawn), then one per face."""
    versions = {p: importlib.metadata.version(p) for p in ("dicebear-core", "dicebear-styles", "cairosvg")}
    head = {"dataset": DATASET, "split": split, "recipe_version": VERSION, "style": STYLE,
            "licence": style_meta().get("license"), "creator": style_meta().get("creator"),
            "source": style_meta().get("source"), "side": SIDE, "background": list(BACKGROUND),
            "attributes": list(attribute_names()), "packages": versions}
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(head) + "\n")
        for i, (opts, row) in enumerate(zip(options, labels)):
            f.write(json.dumps({"index": i, "options": opts,
                                "attributes": [n for n, v in zip(attribute_names(), row) if v]}) + "\n")
    os.replace(tmp, path)


def load(split: str, *, limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, what they are) of ``split``: the whole split from the cache (rendered on first use), or
    ``limit`` faces chosen by ``seed`` and drawn now, unless the cache already holds them."""
    n = COUNTS[split]
    npz, _ = _paths(split)
    chosen = None if limit is None or limit >= n else np.sort(np.random.default_rng(seed).choice(n, limit, False))
    if chosen is not None and not npz.is_file():
        images, labels, _ = draw(split, chosen)
        return images, labels, f"{limit} of the {n:,} {split} faces ({STYLE}, drawn now; seed {seed})"
    if not npz.is_file():
        build_cache(split)
    with np.load(npz) as f:
        images, labels = f["images"], f["attributes"]
    what = f"{n:,} {split} faces" if chosen is None else f"{limit} of the {n:,} {split} faces (seed {seed})"
    if chosen is not None:
        images, labels = images[chosen], labels[chosen]
    return images, labels, (f"{what} from {npz} ({STYLE} by {style_meta()['creator']['name']}, "
                            f"{style_meta()['license']['name']})")
