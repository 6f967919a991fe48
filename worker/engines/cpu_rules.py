"""Rule conditions decided from the CPU engine's measurements of a window.

The condition's words were parsed against the vocabulary of `shared.rule_vocabulary` (the API
refused anything else); each is decided here from the numbers `cpu_analysis` measured, with
the same thresholds the sentences use, so an alert agrees with the commentary beside it.
"""

from __future__ import annotations

from shared.rule_vocabulary import Condition
from worker.engines.cpu_analysis import Measures
from worker.engines.cpu_words import TREND

COLOUR_SEEN = 0.1  # share of the picture: the colour is visible
COLOUR_MOSTLY = 0.5  # share of the picture: mostly that colour
DARK_BELOW = 90.0  # grey level of the last frame (the sentences' "dark")
BRIGHT_ABOVE = 170.0  # grey level of the last frame (the sentences' "bright")


def decide(condition: Condition, m: Measures) -> bool:
    """Whether `condition` holds in the window `m` measured."""
    topic = condition.topic
    if topic in ("people", "faces"):
        count = m.people if topic == "people" else m.faces
        return count == 0 if condition.none else count >= condition.at_least
    if topic == "motion":
        return _motion(condition, m)
    if topic == "colour":
        share = dict(m.colours).get(condition.colour, 0.0)
        return share >= (COLOUR_MOSTLY if condition.mostly else COLOUR_SEEN)
    if topic == "light":
        return _light(condition.level, m)
    return m.scene_cut


def _motion(condition: Condition, m: Measures) -> bool:
    moving = m.motion.moving and not m.motion.camera  # a pan is the camera, not the scene
    if condition.none:
        return not m.motion.moving
    if not moving or not condition.region:
        return moving
    places = {m.motion.where, *(thing.where for thing in m.motion.things)}
    return condition.region in places or "everywhere" in places


def _light(level: str, m: Measures) -> bool:
    if level == "dark":
        return m.brightness[-1] < DARK_BELOW
    if level == "bright":
        return m.brightness[-1] > BRIGHT_ABOVE
    if level == "darker":
        return m.brightness_change <= -TREND
    if level == "brighter":
        return m.brightness_change >= TREND
    return abs(m.brightness_change) >= TREND
