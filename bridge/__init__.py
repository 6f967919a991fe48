"""The LiveKit bridge (`lookout livekit`): a source's speech, video and commentary out to its
LiveKit room, and a participant's camera in as the source's producer.

Not named `livekit`: that is the SDK's package (`livekit.rtc`, `livekit.api`).
"""
