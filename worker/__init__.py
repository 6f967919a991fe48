"""The commentary worker: windows of frames in, text and speech chunks out, over Redis."""
