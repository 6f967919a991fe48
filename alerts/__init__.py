"""`lookout alerts`: delivers watch-rule alerts over webhooks and MQTT (its own process)."""
