"""The project's config keys. ``add_dive_config(cfg)`` is the only place they are defined."""

from __future__ import annotations

from detectron2.config import CfgNode as CN


def add_dive_config(cfg: CN) -> CN:
    """Add the keys of dive_d2 to a Detectron2 config (in place) and return it."""
    # ---- user COCO-format data, see dive_d2/data/user_coco.py ----
    # The model's classes, in order; empty: the categories of DATASETS.COCO_TRAIN.JSON if given, else the
    # thing_classes of DATASETS.TRAIN[0]. COCO categories are matched to them by name.
    cfg.DATASETS.CLASS_NAMES = ()
    cfg.DATASETS.COCO_TRAIN = CN()
    cfg.DATASETS.COCO_TRAIN.JSON = ""  # COCO json to train on; replaces DATASETS.TRAIN when set
    cfg.DATASETS.COCO_TRAIN.IMAGES = ""  # folder that its images[*].file_name are relative to
    cfg.DATASETS.COCO_TEST = CN()
    cfg.DATASETS.COCO_TEST.JSON = ""  # COCO json to evaluate on; replaces DATASETS.TEST when set
    cfg.DATASETS.COCO_TEST.IMAGES = ""  # folder that its images[*].file_name are relative to
    # Evaluate on the first N images of each test dataset only (0: all). For quick runs; the subset is
    # the dataset's first N records, so it is the same on every machine.
    cfg.DATASETS.TEST_LIMIT = 0
    # With TEST_LIMIT N, start at record S instead of 0 (records S .. S+N-1): a long evaluation can be split
    # into slices that sessions or machines invert one at a time.
    cfg.DATASETS.TEST_START = 0
    # DIVE evaluations keep each image's detections in this folder (relative to OUTPUT_DIR, or absolute) as
    # soon as its batch is inverted, and a rerun of the same evaluation reads them back instead of inverting
    # again, so an interrupted 500-image run resumes (dive_d2/evaluation/detections_cache.py). Files are per
    # weights, MODEL config and code, so nothing stale is reused. "" turns it off. Faster R-CNN ignores it.
    cfg.TEST.DETECTIONS_CACHE = "detections_cache"
    # Images per test batch (Detectron2's loaders use 1). DIVE inverts a batch's images together, each with its
    # own seed, so its detections do not depend on the batch; configs/Base-DIVE.yaml sets 8.
    cfg.TEST.IMS_PER_BATCH = 1

    # ---- optimizer, see dive_d2/solver.py ----
    cfg.SOLVER.OPTIMIZER = "SGD"  # "SGD" (Detectron2's builder) or "ADAMW"
    cfg.SOLVER.ADAM_BETAS = (0.9, 0.999)  # AdamW betas

    # ---- the DIVE meta-architecture, see dive_d2/modeling/meta_arch.py ----
    cfg.MODEL.DIVE = CN()
    cfg.MODEL.DIVE.NUM_CLASSES = 3  # class tokens of the layout vocabulary
    cfg.MODEL.DIVE.NUM_SLOTS = 4  # objects per layout (3 tokens each); more objects: the largest are kept
    # Corner grid points per axis, spanning the image edge to edge. 65 on 64 px images puts a grid point on
    # every integer pixel edge, so the grid costs no AP there (tools/quantisation_bound.py).
    cfg.MODEL.DIVE.GRID_SIZE = 65
    # Images are resized to INPUT_SIZE x INPUT_SIZE without keeping their aspect ratio (boxes follow), so
    # the layout grid spans the whole image whatever its shape.
    cfg.MODEL.DIVE.INPUT_SIZE = 32
    cfg.MODEL.DIVE.TRAIN_IMAGE_MODEL = True  # train p(x|y): UNet and layout encoder (loss_image)
    cfg.MODEL.DIVE.TRAIN_PRIOR = True  # train p(y) on the frozen vocabulary table (loss_prior)
    # Folder written by tools/export_diffusers.py: its unet/, layout_encoder/, prior/ replace the freshly
    # built parts (before MODEL.WEIGHTS, if any, is loaded). Empty: build from the keys below.
    cfg.MODEL.DIVE.PRETRAINED_DIR = ""

    cfg.MODEL.DIVE.FIRST_STAGE = CN()
    cfg.MODEL.DIVE.FIRST_STAGE.NAME = "pixel"  # "pixel", "autoencoder_kl" or "vq" (diffusers, frozen)
    cfg.MODEL.DIVE.FIRST_STAGE.PATH = ""  # local from_pretrained folder of the autoencoder
    cfg.MODEL.DIVE.FIRST_STAGE.SCALING_FACTOR = 0.0  # latent scale; 0: the autoencoder's own config value

    cfg.MODEL.DIVE.LAYOUT_ENCODER = CN()
    cfg.MODEL.DIVE.LAYOUT_ENCODER.WIDTH = 64  # token embedding width = UNet cross-attention width
    cfg.MODEL.DIVE.LAYOUT_ENCODER.NUM_LAYERS = 2
    cfg.MODEL.DIVE.LAYOUT_ENCODER.NUM_HEADS = 4
    # Corner rows: "free" (LDM's) or "fourier"; fourier learned position where free did not in a matched
    # 6000-iteration digits run (docs/generative_pair.md).
    cfg.MODEL.DIVE.LAYOUT_ENCODER.COORDINATE_EMBEDDING = "fourier"
    cfg.MODEL.DIVE.LAYOUT_ENCODER.NUM_FREQUENCIES = 6  # sin/cos frequencies of the "fourier" corner rows

    cfg.MODEL.DIVE.UNET = CN()
    cfg.MODEL.DIVE.UNET.BLOCK_OUT_CHANNELS = (32, 64, 64)
    # No attention at full resolution: on 2 CPU cores it quadruples the cost of a training step at 32x32
    # (measured: 0.42 s vs 1.5 s for batch 8 on one thread); the layout reaches it through the lower levels.
    cfg.MODEL.DIVE.UNET.DOWN_BLOCK_TYPES = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    cfg.MODEL.DIVE.UNET.UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    cfg.MODEL.DIVE.UNET.LAYERS_PER_BLOCK = 1
    cfg.MODEL.DIVE.UNET.ATTENTION_HEADS = 4
    cfg.MODEL.DIVE.UNET.NORM_NUM_GROUPS = 8
    # Two extra UNet input channels holding each pixel's normalised (x, y): convolutions are translation
    # equivariant, so without them the UNet learns where a box is only from zero-padding effects, slowly.
    cfg.MODEL.DIVE.UNET.COORDINATE_CHANNELS = True

    # Full-resolution layout view joining the UNet input (dive_d2/modeling/spatial_layout.py): each latent
    # pixel attends over the encoded layout with a query made from its position; 0 channels turns it off.
    cfg.MODEL.DIVE.SPATIAL_MAP = CN()
    cfg.MODEL.DIVE.SPATIAL_MAP.CHANNELS = 8
    cfg.MODEL.DIVE.SPATIAL_MAP.NUM_HEADS = 4
    cfg.MODEL.DIVE.SPATIAL_MAP.HEAD_WIDTH = 16
    # sin/cos frequencies of the pixel queries; kept apart from LAYOUT_ENCODER.NUM_FREQUENCIES because only
    # the corner rows are searched by inversion (and so need to be smooth), not the fixed pixel grid.
    cfg.MODEL.DIVE.SPATIAL_MAP.NUM_FREQUENCIES = 6
    # Training aid, not in the paper (session 51): > 0 adds loss_image_occupancy, this weight times the binary
    # cross-entropy of the map's first NUM_CLASSES channels against which latent pixels each class's boxes cover
    # (spatial_layout.layout_occupancy), so the corner table and the map learn position from the first step. The
    # map stays a function of the layout tokens alone: inversion is unchanged. Needs CHANNELS >= NUM_CLASSES.
    cfg.MODEL.DIVE.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT = 0.0

    cfg.MODEL.DIVE.PRIOR = CN()
    cfg.MODEL.DIVE.PRIOR.WIDTH = 128
    cfg.MODEL.DIVE.PRIOR.NUM_LAYERS = 4
    cfg.MODEL.DIVE.PRIOR.NUM_HEADS = 4
    # Weight of the rounding term (cross-entropy of the true tokens given the prior's clean estimate,
    # Diffusion-LM) added to the prior's epsilon loss in training; 0 = epsilon loss only, as the paper.
    cfg.MODEL.DIVE.PRIOR.ROUNDING_WEIGHT = 0.0
    # What the prior's transformer outputs: "epsilon" (the noise, as the paper) or "token_posterior" (logits
    # over the vocabulary on top of each position's own posterior; CDCD's score interpolation), see
    # dive_d2/modeling/layout_prior.py.
    cfg.MODEL.DIVE.PRIOR.PARAMETERISATION = "epsilon"
    # Weight of loss_prior_tokens, the cross-entropy of the true tokens under a token_posterior prior's logits
    # (needs that parameterisation; 0 trains on the epsilon loss alone).
    cfg.MODEL.DIVE.PRIOR.TOKEN_LOSS_WEIGHT = 0.0

    # Ranking term of p(x|y) training (loss_image_ranking): each image's true layout must have a lower
    # denoising error than one random single-object move of it (another class, removal, an edge or the box
    # moved by one of SHIFTS grid cells; dive_d2/layout/moves.py) on the same (t, noise). Inversion fails
    # where wrong layouts come within a few percent of the truth's loss (docs/detection.md); this trains
    # that margin directly. It costs a second UNet pass per image. WEIGHT 0 = the paper's denoising loss only.
    cfg.MODEL.DIVE.RANKING = CN()
    cfg.MODEL.DIVE.RANKING.WEIGHT = 0.0
    # Soft-hinge width relative to the true layout's error (ranking_loss in dive_d2/modeling/denoising.py).
    cfg.MODEL.DIVE.RANKING.TEMPERATURE = 0.05
    cfg.MODEL.DIVE.RANKING.SHIFTS = (1, 2, 4, 8)
    # Only samples with a timestep in [MIN_TIMESTEP, MAX_TIMESTEP) are ranked (MAX 0 = the schedule's end), since
    # at low and high t a moved box hardly changes the error (tools/rank_layouts.py per-t rises). The denoising
    # loss keeps every sample. Ranking only t in [200, 700) did not steepen the basin (docs/generative_pair.md).
    cfg.MODEL.DIVE.RANKING.MIN_TIMESTEP = 0
    cfg.MODEL.DIVE.RANKING.MAX_TIMESTEP = 0
    # Hard negatives (session 17): a file of tools/mine_negatives.py, wrong layouts the inversion returned for
    # training images (dive_d2/data/hard_negatives.py). When set, the ranking term ranks each step
    # NEGATIVES_PER_STEP of those images' true layouts against their mined layouts instead of random moves
    # (SHIFTS unused); the denoising loss keeps the training batch. "" = random moves.
    cfg.MODEL.DIVE.RANKING.NEGATIVES = ""
    cfg.MODEL.DIVE.RANKING.NEGATIVES_PER_STEP = 8

    # Detection by inversion, see dive_d2/inversion/engine.py (eval mode of DIVE).
    cfg.MODEL.DIVE.INVERSION = CN()
    cfg.MODEL.DIVE.INVERSION.MAX_STEPS = 300  # optimisation steps per image at most (paper: 2000 on COCO)
    cfg.MODEL.DIVE.INVERSION.LEARNING_RATE = 0.05  # Adam learning rate on the embedding sequence v
    cfg.MODEL.DIVE.INVERSION.NUM_PAIRS = 64  # fixed (t, noise) pairs, evenly spread timesteps, seeded noise
    # Pairs' timesteps are spread over [MIN_TIMESTEP, MAX_TIMESTEP); MAX 0 = the schedule's end; (0, 0) is the
    # paper's whole schedule. Where the position signal of a model lives: tools/rank_layouts.py per-t table.
    cfg.MODEL.DIVE.INVERSION.MIN_TIMESTEP = 0
    cfg.MODEL.DIVE.INVERSION.MAX_TIMESTEP = 0
    cfg.MODEL.DIVE.INVERSION.PAIRS_PER_STEP = 16  # pairs per step, taken in a reshuffled order each pass
    cfg.MODEL.DIVE.INVERSION.MONITOR_PAIRS = 32  # a separate fixed pair set for the monitor
    cfg.MODEL.DIVE.INVERSION.MONITOR_PERIOD = 10  # steps between monitor checks
    cfg.MODEL.DIVE.INVERSION.PATIENCE = 5  # stop an image after this many checks without improvement
    cfg.MODEL.DIVE.INVERSION.PRIOR_WEIGHT = 1.0  # lambda of the prior's denoising error; 0 turns p(y) off
    cfg.MODEL.DIVE.INVERSION.SNAP = True  # straight-through snapping each step; False: snap once at the end
    cfg.MODEL.DIVE.INVERSION.METRIC = "l2"  # snapping metric: "l2" or "cosine"
    cfg.MODEL.DIVE.INVERSION.INIT = "random"  # "random" (vocabulary statistics), "prior" (a p(y) sample), "error_map"
    cfg.MODEL.DIVE.INVERSION.PRIOR_INIT_STEPS = 50  # DDIM steps of the prior sample for INIT "prior"
    # INIT "error_map" (box parameterisation): slot centres drawn from the empty layout's per-pixel denoising
    # error raised to this power, where p(x|y) cannot explain the image without objects
    # (dive_d2/inversion/error_map.py)
    cfg.MODEL.DIVE.INVERSION.ERROR_MAP_POWER = 2.0
    # What gradient descent moves: "embedding" (the paper's free sequence v) or "box" (per slot class logits
    # and a sigmoid centre/size box through the smooth corner embedding); dive_d2/inversion/parameterisations.py
    cfg.MODEL.DIVE.INVERSION.PARAMETERISATION = "embedding"
    # "box" only: the gradient reaching a corner is that of the corner function smoothed by a Gaussian of this
    # std (normalised units; 0.03 is about 2 px of a 64 px image). The finest Fourier terms otherwise dominate it
    # and change sign every few pixels, while the denoising error varies smoothly over tens of pixels.
    cfg.MODEL.DIVE.INVERSION.BOX_SMOOTHING = 0.0
    # Coarse-to-fine ("box" only): when > 0, step 0 uses this smoothing, which decays geometrically to
    # BOX_SMOOTHING over the first BOX_SMOOTHING_ANNEAL_STEPS steps (then stays there). A wide smoothing
    # first moves boxes by the coarse shape of the error surface; 0 keeps BOX_SMOOTHING throughout.
    cfg.MODEL.DIVE.INVERSION.BOX_SMOOTHING_START = 0.0
    cfg.MODEL.DIVE.INVERSION.BOX_SMOOTHING_ANNEAL_STEPS = 50
    # Runs per image from different starting points; the one with the lowest monitor loss is kept (R x cost).
    cfg.MODEL.DIVE.INVERSION.RESTARTS = 1
    # What the detector returns of R restarts: "best" (the run with the lowest monitor loss) or "pooled" (the
    # union of all runs' objects; same-class boxes of different runs with IoU >= POOL_IOU are one detection
    # scored by the mean of its score over the R runs, 0 where a run lacks it); dive_d2/inversion/pooling.py
    cfg.MODEL.DIVE.INVERSION.RESTART_SELECTION = "best"
    # After the search: sweeps of single-object moves (class, removal, an edge or the box moved by each of
    # POLISH_SHIFTS grid cells) on the returned layout, each kept if it lowers the monitor loss
    # (dive_d2/inversion/polish.py); 0 turns it off. Not applied to RESTART_SELECTION "pooled".
    cfg.MODEL.DIVE.INVERSION.POLISH_SWEEPS = 0
    cfg.MODEL.DIVE.INVERSION.POLISH_SHIFTS = (4, 1)
    cfg.MODEL.DIVE.INVERSION.POOL_IOU = 0.5
    # Not in the paper (session 43): more inversion passes, each the whole detector (inversion, decoding and the steps
    # after it) with PRIOR_WEIGHT replaced by one of these weights; their finished detections are pooled with the
    # main pass's (dive_d2/inversion/pooling.py: same-class boxes of different passes at IoU >= POOLED_PASS_IOU are one
    # detection scored by POOLED_PASS_SCORE, "max" or "mean" over the passes). () = the main pass alone; each weight
    # adds the main pass's cost. With (0.1,) on the whole shapes val split AP50 86.8 -> 87.4, images 144-499 86.3 ->
    # 86.7 ("mean" at IoU 0.5 chosen on images 0-143; docs/detection.md, "Pooling a second pass").
    cfg.MODEL.DIVE.INVERSION.POOLED_PASS_PRIOR_WEIGHTS = ()
    cfg.MODEL.DIVE.INVERSION.POOLED_PASS_IOU = 0.5
    cfg.MODEL.DIVE.INVERSION.POOLED_PASS_SCORE = "mean"
    # "box" only: every RESEED_PERIOD steps each run's weakest slot, when its leave-one-out evidence (monitor
    # loss rise without it; 0 for an empty slot) is at most RESEED_MAX_RISE, restarts as a random object
    # (dive_d2/inversion/reseeding.py); none in the last RESEED_PERIOD steps. 0 turns it off.
    cfg.MODEL.DIVE.INVERSION.RESEED_PERIOD = 0
    cfg.MODEL.DIVE.INVERSION.RESEED_MAX_RISE = 0.0
    cfg.MODEL.DIVE.INVERSION.SEED = 0  # seeds pairs and, with each image's id, its initialisation
    # Detection confidence: "leave_one_out", "margin" or "constant" (dive_d2/inversion/scoring.py).
    cfg.MODEL.DIVE.INVERSION.SCORE = "leave_one_out"
    cfg.MODEL.DIVE.INVERSION.SCORE_TEMPERATURE = 0.01  # leave_one_out: sigmoid(loss rise / this); AP-neutral
    # Not in the paper: after decoding, fit each box to the connected parts of the empty layout's denoising-error
    # map (cells above REFINE_THRESHOLD x its maximum) that touch it, within a window widened on each side by
    # max(REFINE_MIN_MARGIN, REFINE_MARGIN_RATIO x the box side) (normalised units); classes and scores are kept
    # (dive_d2/inversion/box_refinement.py). Applies to "best" and "pooled" alike.
    cfg.MODEL.DIVE.INVERSION.REFINE_BOXES = False
    cfg.MODEL.DIVE.INVERSION.REFINE_THRESHOLD = 0.15
    cfg.MODEL.DIVE.INVERSION.REFINE_MIN_MARGIN = 0.1875
    cfg.MODEL.DIVE.INVERSION.REFINE_MARGIN_RATIO = 1.5
    # Not in the paper: re-choose each returned box's class (after REFINE_BOXES) as the class whose single-object
    # layout leaves the least denoising error inside the box (dive_d2/inversion/box_classes.py).
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_BOXES = False
    # The score of a reclassified box: "layout" keeps SCORE's; "explained" is the fraction of the box's empty-layout
    # denoising error that its single-object layout explains; "explained_share" multiplies that by the square root
    # of the box's share of the whole map's empty-layout error; "explained_marginal" ranks the boxes greedily, the
    # share counting only the error no box ranked before explains better; "explained_won_cells" counts in the share
    # only the cells the box explains at least as well as every other box, except boxes of its class overlapping
    # it at IoU > CANDIDATE_NMS_IOU (box_classes.py).
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_SCORE = "layout"
    # Not in the paper: before the class decision (needs RECLASSIFY_BOXES), add the bounding boxes of the 8-connected
    # parts of the empty layout's error map above each level of CANDIDATE_THRESHOLDS x its maximum as extra boxes;
    # after it, drop per class the lower-scored of boxes overlapping at IoU > CANDIDATE_NMS_IOU
    # (error_map_candidates.py).
    cfg.MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES = False
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_THRESHOLDS = (0.15,)
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_NMS_IOU = 0.5
    # Also cut each part of the map where it narrows (touching objects make one part) and add the pieces' boxes.
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_SPLIT = False
    # Also add, at each level, the boxes of the regions the mask encloses (the map marks outlines, so overlapping
    # objects that make one part still enclose regions of their own), grown by CANDIDATE_HOLE_MARGIN latent cells.
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_HOLES = False
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_HOLE_MARGIN = 2
    # After the class decision, outline the residual maps of the CANDIDATE_RESIDUALS best-scored detections (the
    # empty map minus what each one's object explains: it still outlines a neighbour that made one part with it),
    # add their new boxes and decide again over all boxes; 0: off (error_map_candidates.py, add_residuals).
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_RESIDUALS = 0
    # Also outline, for every pair of the CANDIDATE_RESIDUAL_PAIRS best-scored detections, the map with the two
    # explained together (an object joined to two found neighbours); 0: off, else >= 2 (add_residuals).
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_RESIDUAL_PAIRS = 0
    # Not in the paper: after everything above, rescore the JOINT_LAYOUT_TOP_K best detections by what each one's
    # object explains inside its box next to a joint layout of the better ones (those reaching JOINT_LAYOUT_ACCEPT
    # of what they explain alone join it), so parts and unions of found objects drop; 0: off
    # (joint_layout_scores.py). Each score is multiplied by that ratio to the power JOINT_LAYOUT_EXPONENT
    # (session 35 used 0.5).
    cfg.MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K = 0
    cfg.MODEL.DIVE.INVERSION.JOINT_LAYOUT_ACCEPT = 0.5
    cfg.MODEL.DIVE.INVERSION.JOINT_LAYOUT_EXPONENT = 0.3
    # Which members of that joint layout a detection is measured next to: "all", or "overlapping" (only those
    # whose boxes overlap its box, so objects elsewhere in the image cannot lower its ratio).
    cfg.MODEL.DIVE.INVERSION.JOINT_LAYOUT_CONTEXT = "all"
    # Not in the paper: after everything above, return each detection once more with every other class, scored
    # its score * CLASS_ALTERNATIVES_FACTOR * (what that class's single-object layout explains in the box over what
    # the decided class's explains), as Faster R-CNN returns a box with several classes; 0: off
    # (class_alternatives.py).
    cfg.MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR = 0.0
    # Not in the paper: last of all, multiply each detection's score by exp(-PRIOR_SCORE_WEIGHT x p(y)'s denoising
    # error of the layout holding that object alone / p(y)'s error of the empty layout), both over PRIOR_SCORE_PAIRS
    # fixed pairs (seeded with SEED + 4), so boxes not shaped like the training set's objects (parts, unions) drop
    # in the ranking; 0: off (prior_scores.py).
    cfg.MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT = 0.0
    cfg.MODEL.DIVE.INVERSION.PRIOR_SCORE_PAIRS = 64
    # Let CUDA run the inversion's convolutions and matrix products in TF32 (PyTorch's cuDNN default): about 20%
    # faster on an H200 but 1.6 AP50 lower on dive_shapes_val (dive_d2/inversion/precision.py). No effect on CPU.
    cfg.MODEL.DIVE.INVERSION.ALLOW_TF32 = False

    # diffusers DDPMScheduler, epsilon prediction, shared by both models (and by MODEL.DIFFUSION_CLASSIFIER)
    cfg.MODEL.DIVE.SCHEDULER = CN()
    cfg.MODEL.DIVE.SCHEDULER.NUM_TRAIN_TIMESTEPS = 1000
    cfg.MODEL.DIVE.SCHEDULER.BETA_SCHEDULE = "linear"
    cfg.MODEL.DIVE.SCHEDULER.BETA_START = 0.0001
    cfg.MODEL.DIVE.SCHEDULER.BETA_END = 0.02

    # ---- DIVE classification: a class-conditional diffusion model, see dive_d2/modeling/class_conditional.py
    cfg.MODEL.DIFFUSION_CLASSIFIER = CN()
    cfg.MODEL.DIFFUSION_CLASSIFIER.NUM_CLASSES = 10
    # Images must already be INPUT_SIZE x INPUT_SIZE with IN_CHANNELS channels (1 with INPUT.FORMAT "L",
    # 3 with "RGB"): a classifier that resized or converted silently would report accuracy on other data.
    cfg.MODEL.DIFFUSION_CLASSIFIER.INPUT_SIZE = 16
    cfg.MODEL.DIFFUSION_CLASSIFIER.IN_CHANNELS = 1
    # The class table (NUM_CLASSES x 4 * BLOCK_OUT_CHANNELS[0]) is added to the timestep embedding of a
    # diffusers UNet2DModel (class_embed_type "identity"): it is the vocabulary inversion snaps to.
    cfg.MODEL.DIFFUSION_CLASSIFIER.BLOCK_OUT_CHANNELS = (16, 32)
    cfg.MODEL.DIFFUSION_CLASSIFIER.LAYERS_PER_BLOCK = 1
    cfg.MODEL.DIFFUSION_CLASSIFIER.NORM_NUM_GROUPS = 8
    # Eval mode: "inversion" (DIVE), "enumeration" (Diffusion Classifier) or "adaptive" (its adaptive variant).
    cfg.MODEL.DIFFUSION_CLASSIFIER.METHOD = "inversion"
    # Pairs' timesteps are spread over [MIN_TIMESTEP, MAX_TIMESTEP) for every method; MAX 0 = the schedule's end.
    cfg.MODEL.DIFFUSION_CLASSIFIER.MIN_TIMESTEP = 0
    cfg.MODEL.DIFFUSION_CLASSIFIER.MAX_TIMESTEP = 0
    cfg.MODEL.DIFFUSION_CLASSIFIER.SEED = 0  # seeds every (t, noise) pair set and inversion's initialisation
    cfg.MODEL.DIFFUSION_CLASSIFIER.ENUMERATION = CN()
    cfg.MODEL.DIFFUSION_CLASSIFIER.ENUMERATION.NUM_PAIRS = 16  # pairs per class, plain enumeration
    # Adaptive enumeration: round r scores the surviving classes on ADAPTIVE_PAIRS[r] new pairs (errors
    # accumulate over rounds) and keeps the ADAPTIVE_KEEP[r] best (one fewer entry than ADAPTIVE_PAIRS).
    cfg.MODEL.DIFFUSION_CLASSIFIER.ENUMERATION.ADAPTIVE_PAIRS = (2, 4, 10)
    cfg.MODEL.DIFFUSION_CLASSIFIER.ENUMERATION.ADAPTIVE_KEEP = (10, 3)
    cfg.MODEL.DIFFUSION_CLASSIFIER.ENUMERATION.BATCH_SIZE = 512  # network samples per forward pass
    # Inversion: one class embedding per image, the detection engine's loop (dive_d2/inversion/engine.py).
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION = CN()
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.MAX_STEPS = 200  # the paper's fixed protocol: 200 steps
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.LEARNING_RATE = 1.0  # Adam; trained rows lie ~11 apart (L2, width 64)
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.NUM_PAIRS = 32
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.PAIRS_PER_STEP = 2
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.MONITOR_PAIRS = 8
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.MONITOR_PERIOD = 5
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.PATIENCE = 6  # 0 disables early stopping (runs MAX_STEPS)
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.SNAP = True
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.METRIC = "l2"
    # What moves: "embedding" (the paper: a free class embedding) or "logits" (softmax over the class rows,
    # straight-through argmax); dive_d2/classification/inversion.py
    cfg.MODEL.DIFFUSION_CLASSIFIER.INVERSION.PARAMETERISATION = "embedding"
    return cfg
