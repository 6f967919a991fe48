"""Capture producers: read a video source, publish JPEG frames to its Redis stream."""
