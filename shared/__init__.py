"""What every Lookout process agrees on: settings, Redis names, message and record codecs."""
