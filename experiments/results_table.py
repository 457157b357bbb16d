"""Print experiments/runs.jsonl as the Markdown table kept in experiments/RESULTS.md.

Cells are "linear probe / retrieval R@1 (stage seconds)" on the test split; "-"
where the run did not include the stage (CoCLR runs reuse cached InfoNCE weights).
"""

import json
from pathlib import Path

COLUMNS = ["random_rgb", "random_flow", "infonce_rgb", "infonce_flow", "coclr1_rgb", "coclr1_flow",
           "coclr2_rgb", "coclr2_flow", "uber_rgb", "uber_flow"]


def cell(r: dict | None) -> str:
    if r is None:
        return "-"
    extra = f" ({r['seconds']:.0f}s)" if "seconds" in r else ""
    pur = f" p{r['purity']:.2f}" if "purity" in r else ""
    return f"{r['probe']:.1f} / {r['r1']:.1f}{extra}{pur}"


def main() -> None:
    runs = [json.loads(line) for line in (Path(__file__).parent / "runs.jsonl").read_text().splitlines()]
    print("| run | design | hyperparameters | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (3 + len(COLUMNS)))
    for r in runs:
        d, hp, a, ep = r["design"], r["hp"], r["arch"], r["epochs"]
        design = (f"{d['classes']}cls {d['train_groups']}+{d['test_groups']}g x{d['clips_per_group']} "
                  f"{d['frames']}f {d['size']}px pan{d['pan']} shake{d.get('shake', 0.0)} dis{d['distractors']} "
                  f"speed{d.get('speed', 1.0)} actor{d.get('actor_size', 0.35)} grain{d.get('grain', 12.0)}")
        hyper = (f"S3D w{a['width']} d{a['depth']}, T{hp['T']} {hp['crop']}px area{hp['min_area']}, "
                 f"B{hp['batch']} Q{hp['queue']} t{hp['temperature']} m{hp['momentum']} lr{hp['lr']}, "
                 f"ep {ep['infonce']}/{ep['coclr']}/{ep['uber']}, K{r['topk']} p{r['drop_self']}")
        print(f"| {r['name']} | {design} | {hyper} | " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
