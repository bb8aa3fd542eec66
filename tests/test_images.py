import numpy as np
import pytest
from PIL import Image

from hf_resnet.data.images import ImageError, open_image, to_rgb


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    # Stored landscape, left half red, with "rotate 90 clockwise to display" (orientation 6).
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)

    image = open_image(path)

    assert image.size == (20, 40)  # portrait, as a viewer shows it
    pixels = np.asarray(image).astype(int)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60  # top is the stored left (red)
    assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60


def test_16_bit_greyscale_keeps_its_tones(tmp_path):
    array = np.array([[0, 32768, 65535]] * 3, dtype=np.uint16)
    path = tmp_path / "scan.png"
    Image.fromarray(array).save(path)  # PIL writes a 16-bit PNG, reopened as mode I or I;16

    pixels = np.asarray(open_image(path))

    assert pixels.shape == (3, 3, 3)
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert abs(int(pixels[0, 1, 0]) - 128) <= 1  # plain convert("L") would clip this to 255
    assert pixels[0, 2].tolist() == [255, 255, 255]


def test_palette_transparency_becomes_white_not_black():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((0, 0), 1)
    image.info["transparency"] = 0

    pixels = np.asarray(to_rgb(image))

    assert pixels[0, 0].tolist() == [200, 10, 10]
    assert pixels[3, 3].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["CMYK", "LA", "L", "1", "RGBA", "I;16"])
def test_every_mode_becomes_rgb(mode, tmp_path):
    image = Image.new(mode, (6, 5))
    assert to_rgb(image).mode == "RGB"
    assert to_rgb(image).size == (6, 5)


def test_cmyk_jpeg_decodes_to_matching_colour(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("RGB", (8, 8), (200, 30, 30)).convert("CMYK").save(path)
    pixel = np.asarray(open_image(path))[4, 4].astype(int)
    assert pixel[0] > 150 and pixel[1] < 80 and pixel[2] < 80


def test_truncated_jpeg_error_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated or corrupt"):
        open_image(path)


def test_not_an_image_and_missing_file(tmp_path):
    junk = tmp_path / "notes.jpg"
    junk.write_text("this is text")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        open_image(junk)
    with pytest.raises(ImageError, match=r"absent\.png: no such file"):
        open_image(tmp_path / "absent.png")
