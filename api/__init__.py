"""The Litestar API: relays Redis channels to viewers as SSE, MJPEG and PCM; serves the page."""
