#!/usr/bin/env python
"""How smooth is a DIVE model's corner table, and what does its roughness cost? Three measurements.

    python tools/corner_table_check.py --config-file configs/shapes/dive.yaml --weights weights/shapes/dive.pth

1. Corner rows: mean distance between the rows of cells 1, 4 and 16 grid steps apart in x, and the mean
   row norm. A smooth table has near neighbours much closer than far ones.
2. Prior samples (``--samples``, DDIM ``--prior-steps``): the fraction of class positions that snap to
   ``none``, the decoded objects per layout, and the same when corner positions may not snap to ``none``.
3. Denoising error of p(x|y) against a horizontal shift of the first ground-truth box (pixels of the
   image), averaged over the first ``--images`` val images with objects and 48 fixed pairs over the whole
   schedule: the basin inversion has to descend.
"""

import argparse

import torch
from detectron2.data import DatasetCatalog

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout, prepare_datasets_from_config
from dive_d2.evaluation import encode_record_image, fixed_pairs, layout_errors
from dive_d2.layout.snapping import nearest_allowed_tokens
from dive_d2.loading import load_config, load_model
from dive_d2.sampling import sample_layout_embeddings


def corner_rows(model) -> torch.Tensor:
    """(G, G, width) the vocabulary's corner rows on the G x G grid, indexed (y, x)."""
    tokenizer = model.tokenizer
    grid = tokenizer.grid_size
    return model.layout_encoder.vocabulary()[tokenizer.num_classes : tokenizer.none_token].view(grid, grid, -1)


def corner_row_distances(rows: torch.Tensor, offsets: tuple[int, ...]) -> dict[int, float]:
    """Mean L2 distance between corner rows (G, G, width) ``offset`` cells apart along x, per offset."""
    return {offset: float((rows[:, offset:] - rows[:, :-offset]).norm(dim=-1).mean()) for offset in offsets}


def prior_snapping(model, num_samples: int, num_steps: int) -> dict[str, float]:
    """Where prior samples lose their objects: class positions at ``none``, decoded objects per layout,
    and decoded objects per layout when corners may not snap to ``none``."""
    tokenizer = model.tokenizer
    embeddings = sample_layout_embeddings(model, num_samples, torch.Generator().manual_seed(0), num_steps)
    vocabulary = model.layout_encoder.vocabulary()
    allowed = tokenizer.allowed_tokens()
    tokens = nearest_allowed_tokens(embeddings, vocabulary, allowed, "l2")
    corners_never_none = allowed.clone()
    corners_never_none[~tokenizer.class_positions(), tokenizer.none_token] = False
    presence_by_class = nearest_allowed_tokens(embeddings, vocabulary, corners_never_none, "l2")
    slots = presence_by_class.view(num_samples, tokenizer.num_slots, 3)
    slots[slots[..., 0] == tokenizer.none_token] = tokenizer.none_token
    presence_by_class = slots.flatten(1)

    def objects_per_layout(layouts):
        return sum(len(tokenizer.decode(layout, 1.0, 1.0).classes) for layout in layouts) / num_samples

    return {"class positions at none": float((tokens[:, tokenizer.class_positions()] == tokenizer.none_token)
                                             .float().mean()),
            "objects per layout": objects_per_layout(tokens),
            "objects per layout, corners never none": objects_per_layout(presence_by_class)}


def shift_scan(model, records: list[dict], shifts: list[int], image_format: str) -> torch.Tensor:
    """(len(shifts),) mean rise of the denoising error when the first box moves by each shift (pixels)."""
    size = model.input_size // model.first_stage.downsample
    timesteps, noise = fixed_pairs(48, (model.first_stage.channels, size, size),
                                   model.scheduler.config.num_train_timesteps, seed=0)
    rises = []
    for record in records:
        latents, height, width = encode_record_image(model, record, image_format)
        boxes, classes = ground_truth_layout(record)
        layouts = []
        for shift in shifts:
            moved = boxes.clone()
            moved[0, [0, 2]] = (moved[0, [0, 2]] + shift).clamp(0, width)
            layouts.append(model.tokenizer.encode(moved, classes, height, width))
        errors = layout_errors(model, latents.expand(len(layouts), -1, -1, -1), torch.stack(layouts).to(model.device),
                               timesteps, noise).mean(dim=1)
        rises.append(errors - errors[shifts.index(0)])
    return torch.stack(rises).mean(dim=0).cpu()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--prior-steps", type=int, default=50)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()
    cfg = load_config(args.config_file, args.opts)
    prepare_datasets_from_config(cfg)
    model = load_model(cfg, args.weights)

    rows = corner_rows(model)
    distances = corner_row_distances(rows, (1, 4, 16))
    norm = rows.norm(dim=-1)
    print("corner rows: mean distance to the row " + ", ".join(f"{k} cells away {v:.2f}" for k, v in distances.items())
          + f"; mean row norm {float(norm.mean()):.2f}")
    for name, value in prior_snapping(model, args.samples, args.prior_steps).items():
        print(f"prior samples ({args.samples}): {name}: {value:.3f}")
    records = [r for r in DatasetCatalog.get(args.dataset) if r["annotations"]][: args.images]
    shifts = list(range(-16, 17, 4))
    rises = shift_scan(model, records, shifts, cfg.INPUT.FORMAT)
    print(f"denoising error rise (x1e4) when the first box moves x px, mean of {len(records)} images:")
    print("  " + "  ".join(f"{shift:+d}: {1e4 * float(rise):+.1f}" for shift, rise in zip(shifts, rises, strict=True)))


if __name__ == "__main__":
    main()
