#!/usr/bin/env python
"""Warm-start a smoother corner table: keep only the coarsest sin/cos frequencies of a DIVE checkpoint's
"fourier" corner rows.

    python tools/drop_corner_frequencies.py output/shapes/dive_image_stage4b/model_final.pth \
        output/shapes/dive_corners_f4_init.pth --keep 4

The corner rows are a linear map of sin/cos features of each grid point (dive_d2/modeling/layout_encoder.py);
with 6 frequencies on a 64 px frame the finest has a 4 px period, so neighbouring corner tokens can be far
apart in the table. This keeps the input columns of ``layout_encoder.coordinate_projection`` that belong to
the ``--keep`` coarsest frequencies and drops the rest; load the output as MODEL.WEIGHTS with
MODEL.DIVE.LAYOUT_ENCODER.NUM_FREQUENCIES set to ``--keep`` and fine-tune, so the UNet adapts to the
smoother table. The spatial map's pixel queries (MODEL.DIVE.SPATIAL_MAP.NUM_FREQUENCIES) are not touched.
"""

import argparse
import sys

from dive_d2.loading import read_checkpoint, write_model_state
from dive_d2.modeling.layout_encoder import coarse_feature_columns

PROJECTION = "layout_encoder.coordinate_projection.weight"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a DetectionCheckpointer file of a DIVE model with 'fourier' corner rows")
    parser.add_argument("output", help="where the narrowed checkpoint goes")
    parser.add_argument("--keep", type=int, required=True, help="number of coarsest frequencies to keep")
    args = parser.parse_args(argv)

    try:
        state = read_checkpoint(args.checkpoint, PROJECTION)["model"]
    except ValueError as error:
        print(f"{error}; is it a DIVE checkpoint with 'fourier' corner rows?", file=sys.stderr)
        return 1
    weight = state[PROJECTION]
    num_frequencies, remainder = divmod(weight.shape[1] - 2, 4)
    if remainder or num_frequencies < 1:
        print(f"{args.checkpoint}: {PROJECTION} has {weight.shape[1]} input columns, not 2 + 4 * frequencies",
              file=sys.stderr)
        return 1
    try:
        columns = coarse_feature_columns(num_frequencies, args.keep)
    except ValueError as error:
        print(f"--keep: {error}", file=sys.stderr)
        return 1
    state[PROJECTION] = weight[:, columns].clone()
    write_model_state(state, args.output)
    print(f"wrote {args.output}: {PROJECTION} {tuple(weight.shape)} -> {tuple(state[PROJECTION].shape)} "
          f"({num_frequencies} -> {args.keep} frequencies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
