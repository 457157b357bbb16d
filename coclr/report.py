"""``python -m coclr report-figures <figure>``: the pictures of the Snakemake report.

One sub-command per figure, each reading outputs the pipeline already made:

- ``curves``: loss, instance accuracy and kNN top-1 per epoch of every training stage;
- ``purity``: how often the positives a CoCLR stage mines share the anchor's class;
- ``tsne``: 2-D t-SNE of the test features, one panel per model, coloured by class;
- ``retrieval``: test queries and their top-5 training neighbours (middle frames);
- ``flow``: frames beside their optical flow in the Middlebury colour wheel;
- ``table``: the ablation table as HTML (the report cannot show Markdown).

With several seeds, a curve is the mean over the seeds with a band from their minimum to
their maximum, and each table cell carries its spread.

Figures are PNGs drawn on bare matplotlib ``Figure`` objects, which render with
Agg: no display needed on a cluster node, no pyplot state to leak between
figures. Each function returns its figure (what the tests inspect); ``run``
writes it atomically, like every output of the project.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from coclr.shards import flow_store, frame_store
from coclr.evaluation.ablation import HEADLINE, VIEW_NAMES, cell, method_title, read_json
from coclr.evaluation.features import load_features
from coclr.evaluation.retrieval import centred, similarity
from coclr.flow.visualise import flow_to_rgb
from coclr.io import atomic_path, write_text
from coclr.naming import RESULT_VIEWS, parse_model_name, seed_of_path

NEIGHBOURS = 5
SAME, DIFFERENT = "tab:green", "tab:red"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="figure", required=True)
    for name, help_text in (("curves", "loss and instance accuracy per epoch of each stage"),
                            ("purity", "mining purity per epoch of each CoCLR stage")):
        figure = sub.add_parser(name, help=help_text)
        figure.add_argument("--metrics", nargs="+", required=True, help="runs/<dataset>/<stage>/metrics.csv files")
    tsne = sub.add_parser("tsne", help="t-SNE of the test features, one panel per features file")
    tsne.add_argument("--features", nargs="+", required=True)
    retrieval = sub.add_parser("retrieval", help="test queries and their nearest training videos")
    retrieval.add_argument("--features", nargs="+", required=True, help="one row block per features file")
    retrieval.add_argument("--frames", nargs="+", required=True, help="frame shards")
    retrieval.add_argument("--manifest", required=True, help="for the class names")
    retrieval.add_argument("--queries", type=int, default=4)
    flow = sub.add_parser("flow", help="frames and their flow")
    flow.add_argument("--frames", nargs="+", required=True, help="frame shards")
    flow.add_argument("--flow", nargs="+", required=True, help="flow shards")
    flow.add_argument("--videos", type=int, default=4)
    table = sub.add_parser("table", help="the ablation table as HTML")
    table.add_argument("--ablation", required=True, help="results/<dataset>/ablation.json")
    for figure in sub.choices.values():
        figure.add_argument("--out", required=True)


def epoch_axis(ax) -> None:
    """Whole epochs only, with a light grid."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def save(fig, out) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def stage(metrics_path) -> tuple:
    """``runs/ucf101/seed1/coclr_c1_rgb/metrics.csv`` -> ``("coclr_c1", "rgb", 1)`` (seed 0 without a seed folder)."""
    run = Path(metrics_path).parent
    return (*parse_model_name(run.name), seed_of_path(run))


def title(method, view) -> str:
    return f"{method_title(method)}, {VIEW_NAMES[view]}"


def by_stage(metrics_paths) -> dict:
    """``(method, view)`` -> ``{seed: metrics table}``, stages in the order given."""
    stages = {}
    for path in metrics_paths:
        method, view, seed = stage(path)
        stages.setdefault((method, view), {})[seed] = pd.read_csv(path)
    return stages


def seed_line(ax, tables: dict, key, label) -> None:
    """One line for a stage: ``key`` per epoch, the mean over its seeds, and with several seeds a band
    from their minimum to their maximum. Epochs without the value (the kNN monitor's) are skipped."""
    columns = [table.set_index("epoch")[key] for table in tables.values() if key in table]
    if not columns:
        return
    joined = pd.concat(columns, axis=1).dropna(how="all")
    mean = joined.mean(axis=1)
    (line,) = ax.plot(list(mean.index), list(mean.values), marker="o", label=label)
    if joined.shape[1] > 1:
        ax.fill_between(joined.index, joined.min(axis=1), joined.max(axis=1), color=line.get_color(), alpha=0.2)


def seeds_note(fig, stages: dict) -> None:
    seeds = max(len(tables) for tables in stages.values())
    if seeds > 1:
        fig.suptitle(f"mean over {seeds} seeds, band: their minimum to maximum", fontsize="small")


def curves(metrics_paths) -> Figure:
    """Loss, instance accuracy and (when the kNN monitor ran) kNN top-1 (rows) of the RGB and flow
    stages (columns), one line per stage over its seeds."""
    stages = by_stage(metrics_paths)
    keys = [("loss", "loss"), ("instance_acc", "instance accuracy")]
    if any("knn_top1" in table for tables in stages.values() for table in tables.values()):
        keys.append(("knn_top1", "kNN top-1"))
    fig = Figure(figsize=(10, 3 * len(keys)))
    axes = fig.subplots(len(keys), 2, sharex=True, squeeze=False)
    for (method, view), tables in stages.items():
        column = 0 if view == "rgb" else 1
        for row, (key, _) in enumerate(keys):
            seed_line(axes[row, column], tables, key, method_title(method))
    for column, view in enumerate(("RGB", "flow")):
        axes[0, column].set_title(f"{view} stages")
        axes[-1, column].set_xlabel("epoch")
    for row, (_, name) in enumerate(keys):
        axes[row, 0].set_ylabel(name)
    for ax in axes.flat:
        epoch_axis(ax)
    axes[0, 1].legend(fontsize="small")
    seeds_note(fig, stages)
    return fig


def purity(metrics_paths) -> Figure:
    """Fraction of mined positives of the anchor's class, per epoch, one line per CoCLR stage over its seeds."""
    stages = by_stage(metrics_paths)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for (method, view), tables in stages.items():
        seed_line(ax, tables, "mining_purity", title(method, view))
    ax.set(xlabel="epoch", ylabel="mining purity", ylim=(0, 1), title="Positives mined by the other view")
    epoch_axis(ax)
    ax.legend(fontsize="small")
    seeds_note(fig, stages)
    return fig


def embed(features, seed=0) -> np.ndarray:
    """2-D t-SNE of features, in the centred cosine geometry retrieval uses."""
    from sklearn.manifold import TSNE  # slow to import: only this figure needs it

    points = centred(features).numpy()
    if len(points) < 2:
        return np.zeros((len(points), 2), dtype=np.float32)  # one video: nothing to lay out
    # t-SNE needs 0 < perplexity < samples: a few test videos (a tiny split) get a smaller one.
    perplexity = min(30.0, max(2.0, (len(points) - 1) / 3), len(points) - 1.001)
    return TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def tsne(features_paths) -> Figure:
    """One panel per method (rows) and view (columns): test videos coloured by class."""
    models = [load_features(path) for path in features_paths]
    methods = list(dict.fromkeys(m["method"] for m in models))
    views = list(dict.fromkeys(m["view"] for m in models))
    fig = Figure(figsize=(3.2 * len(views), 3 * len(methods)))
    axes = fig.subplots(len(methods), len(views), squeeze=False)
    for model in models:
        ax = axes[methods.index(model["method"]), views.index(model["view"])]
        points = embed(model["test"]["features"])
        ax.scatter(points[:, 0], points[:, 1], c=model["test"]["labels"], cmap="tab20", s=8)
        ax.set_title(title(model["method"], model["view"]), fontsize="small")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def middle_frame(store, video_id) -> np.ndarray:
    middle = store.num_frames(video_id) // 2
    return store.read(video_id, middle, middle + 1)[0].numpy()


def show(ax, image, label, border=None) -> None:
    """An image without ticks; a coloured frame around it when ``border`` is given."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(label, fontsize="x-small")
    for spine in ax.spines.values():
        spine.set_visible(border is not None)
        spine.set_edgecolor(border or "none")
        spine.set_linewidth(4)


def retrieval(features_paths, frame_paths, manifest, queries=4) -> Figure:
    """Per model, evenly spread test queries and their nearest training videos, framed by class agreement."""
    models = [load_features(path) for path in features_paths]
    store = frame_store(frame_paths)
    class_name = pd.read_csv(manifest, usecols=["video_id", "class_name"]).set_index("video_id")["class_name"]
    test_ids = models[0]["test"]["video_ids"]
    picked = np.linspace(0, len(test_ids) - 1, min(queries, len(test_ids))).round().astype(int)
    k = min(NEIGHBOURS, len(models[0]["train"]["video_ids"]))
    fig = Figure(figsize=(1.6 * (k + 1), 1.8 * len(models) * len(picked)))
    axes = fig.subplots(len(models) * len(picked), k + 1, squeeze=False)
    for m, model in enumerate(models):
        train_ids, train_labels = model["train"]["video_ids"], model["train"]["labels"]
        nearest = similarity(model["test"]["features"][picked], model["train"]["features"]).topk(k, dim=1).indices
        for q, query in enumerate(picked):
            row = axes[m * len(picked) + q]
            query_id = test_ids[query]
            show(row[0], middle_frame(store, query_id), f"{method_title(model['method'])}\n{class_name[query_id]}")
            for ax, neighbour in zip(row[1:], nearest[q].tolist()):
                same = train_labels[neighbour] == model["test"]["labels"][query]
                show(ax, middle_frame(store, train_ids[neighbour]), class_name[train_ids[neighbour]],
                     SAME if same else DIFFERENT)
    return fig


def wheel_key(size=64) -> np.ndarray:
    """The colour of every direction and magnitude up to 1: the legend of the flow colours."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    return flow_to_rgb(np.stack([x, y]), max_magnitude=1.0)


def flow(frame_paths, flow_paths, videos=4) -> Figure:
    """Rows of (middle frame, flow from it to the next frame) for evenly spread videos, plus the colour key."""
    frames, fields = frame_store(frame_paths), flow_store(flow_paths)
    ids = sorted(v for v in fields.index if v in frames)
    picked = [ids[i] for i in np.linspace(0, len(ids) - 1, min(videos, len(ids))).round().astype(int)]
    fig = Figure(figsize=(7.5, 2.5 * len(picked)))
    axes = fig.subplots(len(picked), 3, squeeze=False)
    for row, video_id in zip(axes, picked):
        t = fields.num_frames(video_id) // 2
        show(row[0], frames.read(video_id, t, t + 1)[0].numpy(), f"{video_id}\nframe {t}")
        show(row[1], flow_to_rgb(fields.read(video_id, t, t + 1)[0].numpy().transpose(2, 0, 1)), f"flow {t} -> {t + 1}")
        row[2].axis("off")
    show(axes[0, 2], wheel_key(), "direction and magnitude")
    return fig


def ablation_html(ablation: dict) -> str:
    """The columns of ablation.md (task and view, headline metric) as an HTML table, each cell with
    its spread over the seeds when there are several."""
    columns = {"method": [row["title"] for row in ablation["rows"]]}
    for task in ablation["tasks"]:
        for view in RESULT_VIEWS:
            columns[f"{HEADLINE[task][1]}, {VIEW_NAMES[view]}"] = [
                cell(row[task][view], row.get("spread", {}).get(task, {}).get(view)) for row in ablation["rows"]]
    return pd.DataFrame(columns).to_html(index=False)


def run(args) -> None:
    if args.figure == "table":
        write_text(args.out, ablation_html(read_json(args.ablation)))
        return
    draw = {"curves": lambda: curves(args.metrics), "purity": lambda: purity(args.metrics),
            "tsne": lambda: tsne(args.features),
            "retrieval": lambda: retrieval(args.features, args.frames, args.manifest, args.queries),
            "flow": lambda: flow(args.frames, args.flow, args.videos)}
    save(draw[args.figure](), args.out)
