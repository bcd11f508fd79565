"""Spoken-narration simulation shared by image and video Localized Narratives.

A narration is a list of utterances, each either part of a phrase about one object or a
connector ("and"). `timeline` gives every utterance a (start, end) time in seconds; `trace`
gives mouse positions, sampled at a fixed rate, that scribble over the object while its
phrase is spoken and glide across the image in between. All shapes are convex, so a
piecewise-linear path between points inside a shape stays inside it.
"""

from __future__ import annotations

import cv2
import numpy as np

TRACE_DT_S = 0.1  # seconds between two trace samples
_WAYPOINT_EVERY_S = 0.5  # one new scribble corner per half second of speech
_JITTER_PX = 0.25  # std of the hand tremor added to every trace point, pixels
_OUTSIDE = 0.03  # how far (fraction of the image) a lead-in/out point may lie outside [0, 1]


def utterance_duration(rng: np.random.Generator, text: str) -> float:
    """Seconds it takes to say `text`: ~60 ms a character plus a little variation."""
    return 0.12 + 0.06 * len(text) + float(rng.uniform(0, 0.1))


def timeline(rng: np.random.Generator, utterances: list[str], owners: list[int | None],
             start_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each utterance, increasing and non-overlapping.

    owners[i] is the index of the phrase utterance i belongs to (None for a connector). A pause
    of 0.25-0.45 s precedes every change of owner, so the mouse has time to move between objects;
    words of one phrase follow each other with pauses under 0.08 s.
    """
    times: list[tuple[float, float]] = []
    t = start_s
    for i, text in enumerate(utterances):
        if i > 0:
            changed = owners[i] != owners[i - 1]
            t += float(rng.uniform(0.25, 0.45) if changed else rng.uniform(0.0, 0.08))
        end = t + utterance_duration(rng, text)
        times.append((round(t, 3), round(end, 3)))
        t = end
    return times


def phrase_windows(times: list[tuple[float, float]], owners: list[int | None],
                   count: int) -> list[tuple[float, float]]:
    """(first start, last end) seconds of the utterances of each of `count` phrases."""
    windows = []
    for phrase in range(count):
        mine = [t for t, o in zip(times, owners) if o == phrase]
        windows.append((mine[0][0], mine[-1][1]))
    return windows


def inner_pixels(mask: np.ndarray) -> np.ndarray:
    """(P, 2) x, y pixel-centre coordinates of the mask eroded by one pixel (the mask if tiny)."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(eroded if eroded.any() else mask)
    return np.stack([xs, ys], 1) + 0.5


def scribble(rng: np.random.Generator, mask: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """(n, 3) keypoints [t_s, x_px, y_px] of a scribble inside `mask` spanning `window`."""
    inner = inner_pixels(mask)
    count = max(2, int(np.ceil((window[1] - window[0]) / _WAYPOINT_EVERY_S)) + 1)
    corners = inner[rng.integers(len(inner), size=count)] + rng.uniform(-0.3, 0.3, (count, 2))
    return np.column_stack([np.linspace(window[0], window[1], count), corners])


def border_point(rng: np.random.Generator, size: int) -> np.ndarray:
    """(2,) x, y pixels of a point on a random image side, up to _OUTSIDE * size outside it."""
    along = rng.uniform(0, size)
    out = rng.uniform(0, _OUTSIDE * size)
    side = int(rng.integers(4))
    return np.array([[-out, along], [size + out, along], [along, -out], [along, size + out]][side])


def trace(rng: np.random.Generator, keypoints: np.ndarray, size: int) -> np.ndarray:
    """(N, 3) samples [t_s, x_rel, y_rel] every TRACE_DT_S along piecewise-linear keypoints.

    keypoints: (K, 3) [t_s, x_px, y_px] with increasing t. Positions are divided by `size`,
    so they are relative; lead-in and lead-out points may lie slightly outside [0, 1].
    """
    times = np.arange(keypoints[0, 0], keypoints[-1, 0], TRACE_DT_S)
    xs = np.interp(times, keypoints[:, 0], keypoints[:, 1]) + rng.normal(0, _JITTER_PX, len(times))
    ys = np.interp(times, keypoints[:, 0], keypoints[:, 2]) + rng.normal(0, _JITTER_PX, len(times))
    return np.column_stack([times, xs / size, ys / size])


def narration_trace(rng: np.random.Generator, masks: list[np.ndarray],
                    windows: list[tuple[float, float]], size: int) -> np.ndarray:
    """(N, 3) [t_s, x_rel, y_rel]: from time 0 at the border, over masks[i] during windows[i]
    (in order), then out to the border 0.3-0.6 s after the last window."""
    lead_in = np.array([[0.0, *border_point(rng, size)]])
    end = windows[-1][1] + float(rng.uniform(0.3, 0.6))
    lead_out = np.array([[end, *border_point(rng, size)]])
    scribbles = [scribble(rng, m, w) for m, w in zip(masks, windows)]
    return trace(rng, np.concatenate([lead_in, *scribbles, lead_out]), size)
