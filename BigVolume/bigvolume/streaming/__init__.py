"""Streaming: getting the chunks that views need into memory, in the right order, within a byte budget.

Sources (`sources`) name the pyramids that can be streamed and the reader
that serves each (`readers`); one engine (`engine`) and one cache (`cache`)
serve every source and every view, in the order the ordering policy
(`ordering`, see README.md beside it) decides. Slice views are planned
(`slice_planner`, `level_choice`) and composed (`slice_composition`) here in
plain numpy; the MRML layer turns the result into volume nodes. `window`
chooses a display window from the first coarse chunks.
"""
