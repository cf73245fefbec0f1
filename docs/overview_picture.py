"""Draw docs/overview.jpg, the README's picture, from the released models' pictures in weights/.

    python docs/overview_picture.py

Top: a held-out photo, the released cyclegan_a2b's sketch of it, and ddpm samples (weights/cyclegan.png and
weights/ddpm.png, which `ganexport gallery` draws from the released weights). Bottom: the path every model takes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
BACKGROUND, INK, BOX = (255, 255, 255), (30, 30, 30), (232, 240, 252)
STAGES = ["train", "export", "parity gate", "Triton", "demo"]
NOTES = ["ganexport train\nor import", "ONNX +\nTorchScript", "eager vs exported;\nfail: publish nothing",
         "behind the\nfront door", "Gradio, infer,\nyour client"]


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def main() -> None:
    gallery = Image.open(ROOT / "weights" / "cyclegan.png").convert("RGB")
    photo, sketch = (gallery.crop((x, 44, x + 320, 284)) for x in (4, 328))  # the first held-out photo's row
    ddpm = Image.open(ROOT / "weights" / "ddpm.png").convert("RGB").crop((0, 0, 484, 363))  # 6 classes x 8
    ddpm = ddpm.resize((320, 240), Image.LANCZOS)
    width, gap = 3 * 320 + 4 * 20, 20
    canvas = Image.new("RGB", (width, 425), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, (image, caption) in enumerate([(photo, "a photo it never saw"), (sketch, "cyclegan_a2b: its sketch"),
                                          (ddpm, "ddpm: samples by class")]):
        x = gap + i * (320 + gap)
        canvas.paste(image, (x, 10))
        draw.text((x + 160, 262), caption, fill=INK, font=font(18), anchor="mm")
    box_w, y = 150, 300
    step = (width - 2 * gap - box_w) / (len(STAGES) - 1)
    for i, (stage, note) in enumerate(zip(STAGES, NOTES)):
        x = gap + i * step
        draw.rounded_rectangle((x, y, x + box_w, y + 50), 10, fill=BOX, outline=INK, width=2)
        draw.text((x + box_w / 2, y + 25), stage, fill=INK, font=font(20), anchor="mm")
        draw.multiline_text((x + box_w / 2, y + 90), note, fill=INK, font=font(14), anchor="mm", align="center")
        if i:
            draw.line((x - step + box_w + 4, y + 25, x - 6, y + 25), fill=INK, width=3)
            draw.polygon([(x - 4, y + 25), (x - 14, y + 19), (x - 14, y + 31)], fill=INK)
    canvas.save(ROOT / "docs" / "overview.jpg", quality=85, optimize=True)


if __name__ == "__main__":
    main()
