"""The Latent arithmetic tab's handlers, and the Latent space tab's "where does my upload land".

An autoencoder publishes an encoder beside its decoder, and a VAE on attribute-labelled faces an edit
model too (tabs.py finds them by their signatures' kinds and the spec they share). Here a face, held-out or
uploaded, is reconstructed and edited in one request (strength 0 everywhere is the reconstruction); two
faces are morphed by walking the straight line between their latents; and three faces combine as A - B + C.
Held-out faces are drawn on demand (``ganexport.faces.example``: no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganexport.demo.backend import DemoError
from ganexport.demo.tabs import DemoModel
from ganexport.images import grid_image, read_image_at, upscale_for_viewing

MAX_MORPH = 16
SHOWN_SIDE = 192  # the faces are 64x64: shown three times as large


def _show(arr: np.ndarray):
    from ganexport.demo.handlers import to_display

    return to_display(arr, upscale_for_viewing(arr.shape[0], SHOWN_SIDE))


class LatentArithmetic:
    """Mixed into ``handlers.Handlers``: uses its ``backend``, ``plan`` and ``_upload``. An upload is deleted
    once read; its bytes come back as the last output (``last_upload``), so the next call can use it again."""

    def _face(self, served: DemoModel, index: float, image: str | None, last=None) -> tuple[np.ndarray, str, object]:
        """(face at the encoder's size, what it is, the upload kept): the upload when there is one, else held-out
        face ``index`` of the model's data set."""
        shape = served.signature.inputs[0].shape
        if image:
            upload = self._upload(str(image), last)
            arr, notes = read_image_at(upload.data, shape, name=upload.name)
            return arr, " ".join([f"your upload {upload.name}.", *notes]), upload
        from ganexport import faces  # draws the face (DiceBear, cairosvg): on demand

        try:
            arr, labels = faces.example("test", int(index))
        except faces.FacesError as e:
            raise DemoError(str(e)) from None
        names = faces.attribute_names()
        has = [n for n, v in zip(names, labels) if v]
        return arr, f"held-out face {int(index)} ({', '.join(has) or 'none of the attributes'}).", last

    def _partner(self, model: str, kind: str) -> str:
        found = self.plan.partner(model, kind)
        if found is None:
            raise DemoError(f"{model}: its {kind} model is not served; build it (ganexport build)")
        return found

    def edit_face(self, model: str, face: float, image: str | None, last_upload, *strengths: float) -> tuple:
        """(the face, its reconstruction, the edit, status, the upload kept): one request of two rows, strengths 0
        and the sliders' (one per attribute, in the signature's order)."""
        served = self.plan.get(model, "arithmetic")
        names = served.signature.attributes
        if len(strengths) != len(names):
            raise DemoError(f"{model} takes {len(names)} strengths ({', '.join(names)}), got {len(strengths)}")
        arr, what, upload = self._face(served, face, image, last_upload)
        asked = np.asarray(strengths, np.float32)
        out = self.backend.call("edit", model, np.stack([arr, arr]), np.stack([np.zeros_like(asked), asked]))
        moved = ", ".join(f"{n} {s:+g}" for n, s in zip(names, asked) if s) or "no attribute (all strengths 0)"
        status = f"{what} Edit: {moved}. {out.line()}"
        return _show(arr), _show(out.images[0]), _show(out.images[1]), status, upload

    def _encode(self, model: str, faces: list[np.ndarray]):
        return self.backend.call("encode", self._partner(model, "encode"), np.stack(faces))

    def morph(self, model: str, face_a: float, face_b: float, frames: float, image: str | None = None,
              last_upload=None):
        """One row from face A (or the upload) to face B: decodes of evenly spaced points on the line between
        their latents."""
        served = self.plan.get(model, "arithmetic")
        frames = int(max(2, min(MAX_MORPH, int(frames))))
        a, what_a, upload = self._face(served, face_a, image, last_upload)
        b, what_b, _ = self._face(served, face_b, None)
        z = self._encode(model, [a, b])
        t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None]
        path = (1 - t) * z.images[0] + t * z.images[1]
        out = self.backend.call("sample", self._partner(model, "sample"), path.astype(np.float32))
        row = grid_image(out.images, frames, scale=2)
        status = f"From {what_a} to {what_b} {frames} steps. Encode: {z.line()} Decode: {out.line()}"
        return row, status, upload

    def combine(self, model: str, face_a: float, face_b: float, face_c: float, image: str | None = None,
                last_upload=None):
        """A - B + C: the decodes of A, B, C and of z_A - z_B + z_C, side by side."""
        served = self.plan.get(model, "arithmetic")
        faces = [self._face(served, face_a, image, last_upload), self._face(served, face_b, None),
                 self._face(served, face_c, None)]
        z = self._encode(model, [f[0] for f in faces]).images
        latents = np.concatenate([z, (z[0] - z[1] + z[2])[None]]).astype(np.float32)
        out = self.backend.call("sample", self._partner(model, "sample"), latents)
        row = grid_image(np.concatenate([np.stack([f[0] for f in faces]), out.images]), 4, scale=2)
        return row, (f"Top: A, B, C; below: their reconstructions and A - B + C (right). A = {faces[0][1]} "
                     f"B = {faces[1][1]} C = {faces[2][1]} {out.line()}"), faces[0][2]

    # -- Latent space: an upload's place ----------------------------------------------------------------

    def locate(self, model: str, image: str | None) -> tuple:
        """Where an uploaded image lands in a 2-D decoder's latent space: its encoding (x, y), and the decode
        of that point. Returns (decoded point, status, x, y)."""
        self.plan.get(model, "latent")
        if not image:
            raise DemoError("upload an image first")
        encoder = self.plan.partner(model, "encode")
        if encoder is None:
            raise DemoError(f"{model}: no encoder of its latent space is served (ganexport build)")
        upload = self._upload(str(image), None)
        arr, notes = read_image_at(upload.data, self.plan.models[encoder].signature.inputs[0].shape, name=upload.name)
        z = self.backend.call("encode", encoder, arr[None])
        x, y = (float(v) for v in z.images[0])
        point = self.backend.call("sample", model, z.images.astype(np.float32))
        status = " ".join([f"{Path(upload.name).name} lands at z = ({x:.2f}, {y:.2f}).", *notes, z.line()])
        return _show(point.images[0]), status, x, y
