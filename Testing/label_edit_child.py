"""A child process for the kill test: edits a label store and prints each operation once it is acknowledged."""

import json
import sys

import numpy as np

import bigvolume
from bigvolume.labels.editor import LabelEditor
from bigvolume.labels.label_store import open_labels
from bigvolume.labels.operations import Brush, Threshold


def main(image_path, seed):
    rng = np.random.default_rng(int(seed))
    image = bigvolume.open_image(image_path)
    editor = LabelEditor(open_labels(image, "seg"), max_pending=4)
    low, high = image.bounds_ras()
    for _ in range(40):
        if rng.random() < 0.3:
            op = Threshold(int(rng.integers(1, 3)), low=float(rng.uniform(0, 400)), high=float(rng.uniform(500, 1000)))
        else:
            points = [low + rng.random(3) * (high - low) for _ in range(2)]
            op = Brush(int(rng.integers(1, 3)), points=points, radius_mm=float(rng.uniform(1, 4)), erase=rng.random() < 0.2)
        seq = editor.submit(op)
        print(json.dumps({"acknowledged": seq, "operation": op.to_json()}), flush=True)
    editor.close()
    print(json.dumps({"finished": True}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
