"""Tests for Lookout; they start real redis-server, uvicorn and Lookout processes."""
