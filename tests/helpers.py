"""Shared test helpers: loading tools/train_net.py and building configs the way it does."""

import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool(name: str):
    """tools/<name>.py as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def setup_cfg(config_file: str, *opts: str, output_dir: str):
    """The config ``tools/train_net.py`` would build for ``--config-file config_file opts...``."""
    train_net = load_tool("train_net")
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", config_file, *opts, "OUTPUT_DIR", output_dir])
    return train_net, train_net.setup(args)


# A DIVE small enough for tests (16x16 input, 9x9 grid, two UNet levels); appended to a DIVE config.
TINY_DIVE_OPTS = (
    "MODEL.DEVICE", "cpu", "MODEL.DIVE.INPUT_SIZE", "16", "MODEL.DIVE.GRID_SIZE", "9",
    "MODEL.DIVE.UNET.BLOCK_OUT_CHANNELS", "(8, 16)", "MODEL.DIVE.UNET.NORM_NUM_GROUPS", "4",
    "MODEL.DIVE.UNET.DOWN_BLOCK_TYPES", "('DownBlock2D', 'CrossAttnDownBlock2D')",
    "MODEL.DIVE.UNET.UP_BLOCK_TYPES", "('CrossAttnUpBlock2D', 'UpBlock2D')",
    "MODEL.DIVE.UNET.ATTENTION_HEADS", "2", "MODEL.DIVE.LAYOUT_ENCODER.WIDTH", "16",
    "MODEL.DIVE.LAYOUT_ENCODER.NUM_HEADS", "2", "MODEL.DIVE.PRIOR.WIDTH", "32", "MODEL.DIVE.PRIOR.NUM_LAYERS", "1",
)
