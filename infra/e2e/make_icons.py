"""Draw Wardline's Teams icons into manifests/: color.png (192x192) and outline.png (32x32, white on transparent).

Run from anywhere: `python infra/e2e/make_icons.py [--out DIR]`. Output is deterministic for a given Pillow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

MANIFESTS_DIR = Path(__file__).resolve().parents[2] / "manifests"
TEAL = (15, 124, 128, 255)  # #0F7C80, the manifest's accentColor
WHITE = (255, 255, 255, 255)
SUPERSAMPLE = 8


def _glyph_mask(size: int, *, with_pulse_gap: bool) -> Image.Image:
    """An antialiased alpha mask of the glyph: a rounded medical cross crossed by a heartbeat line."""
    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    centre = big / 2
    half_len = big * 0.36
    half_w = big * 0.15
    radius = big * 0.05
    draw.rounded_rectangle((centre - half_w, centre - half_len, centre + half_w, centre + half_len), radius, fill=255)
    draw.rounded_rectangle((centre - half_len, centre - half_w, centre + half_len, centre + half_w), radius, fill=255)
    if with_pulse_gap:
        # The heartbeat line is cut out of the cross, so it reads on any background colour.
        pulse = [
            (centre - half_len * 1.05, centre),
            (centre - half_len * 0.35, centre),
            (centre - half_len * 0.18, centre - half_len * 0.42),
            (centre + half_len * 0.05, centre + half_len * 0.45),
            (centre + half_len * 0.22, centre),
            (centre + half_len * 1.05, centre),
        ]
        draw.line(pulse, fill=0, width=round(big * 0.045), joint="curve")
    return mask.resize((size, size), Image.Resampling.LANCZOS)


def color_icon(size: int = 192) -> Image.Image:
    """Full-colour icon: white glyph on solid teal (Teams rounds the corners itself)."""
    icon = Image.new("RGBA", (size, size), TEAL)
    glyph = _glyph_mask(size, with_pulse_gap=True)
    icon.paste(Image.new("RGBA", (size, size), WHITE), mask=glyph)
    return icon


def outline_icon(size: int = 32) -> Image.Image:
    """Outline icon: pure white pixels whose alpha is the glyph, everything else fully transparent."""
    icon = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    icon.putalpha(_glyph_mask(size, with_pulse_gap=True))
    return icon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=MANIFESTS_DIR, help="output folder (default: manifests/)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    color_icon().save(out / "color.png", optimize=True)
    outline_icon().save(out / "outline.png", optimize=True)
    print(f"wrote {out / 'color.png'} and {out / 'outline.png'}")


if __name__ == "__main__":
    main()
