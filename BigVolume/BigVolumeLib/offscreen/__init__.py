"""Views without the Slicer application or a screen: slice views rendered offscreen by Slicer's own
slice logic (tests, benchmarks, the demo's PNGs)."""
