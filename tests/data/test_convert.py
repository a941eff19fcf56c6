import numpy as np
import pytest
from PIL import Image

from visprompt.data.convert import fit, to_rgb


def test_rgb_is_untouched():
    image = Image.fromarray(np.full((4, 4, 3), 7, np.uint8))
    rgb, converted = to_rgb(image)
    assert not converted and rgb.mode == "RGB"
    assert np.array_equal(np.asarray(rgb), np.asarray(image))


def test_grayscale_repeats_the_channel():
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    rgb, converted = to_rgb(Image.fromarray(gray))
    assert converted
    assert np.array_equal(np.asarray(rgb), np.repeat(gray[..., None], 3, axis=2))


def test_rgba_is_composited_on_white():
    pixels = np.zeros((1, 2, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    pixels[0, 1] = (0, 0, 255, 0)  # fully transparent blue becomes white
    rgb, converted = to_rgb(Image.fromarray(pixels, mode="RGBA"))
    assert converted
    assert np.asarray(rgb).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    image.info["transparency"] = 0  # palette index 0 is transparent
    rgb, converted = to_rgb(image)
    assert converted and np.asarray(rgb).tolist() == [[[255, 255, 255]] * 2]


@pytest.mark.parametrize("value, expected", [(0, 0), (257, 1), (32896, 128), (65535, 255)])
def test_sixteen_bit_is_scaled_not_clipped(value, expected):
    image = Image.fromarray(np.full((2, 2), value, np.uint16))
    assert image.mode.startswith("I;16")
    rgb, converted = to_rgb(image)
    assert converted and np.asarray(rgb).max() == expected and np.asarray(rgb).min() == expected


def test_cmyk_is_converted():
    image = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    rgb, converted = to_rgb(image)
    assert converted and np.asarray(rgb)[0, 0].tolist() == [255, 0, 0]


def test_fit_upscales_and_centre_crops():
    small = fit(Image.new("RGB", (8, 8), (1, 2, 3)), 32)
    assert small.shape == (32, 32, 3) and small.dtype == np.uint8
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white centre third of a black wide image
    out = fit(Image.fromarray(wide), 10)
    assert out.shape == (10, 10, 3)
    assert out[:, 2:8].min() > 200  # the centre crop keeps the white middle
