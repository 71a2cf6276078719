"""Pixels: decoding photos safely (`decode`: formats, EXIF orientation, limits) and the
gallery's thumbnail cache (`thumbnails`)."""
