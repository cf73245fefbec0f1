"""The card's latent-size comparison: the study notes' "a bigger latent keeps more of each face", measured.

Runs of one recipe that differ only in ``latent_dim`` (``ganexport train --model vae_faces --steps N --hp
latent_dim=16``, ...) are evaluated by the same protocols (``recon_faces2k``: reconstruction L1, attributes
kept, sharpness of reconstructions; ``sharpness`` and ``fid_faces2k`` of random decodes), where their eval
records lack them, and one JSON line per run goes to ``weights/<model>.latent_sizes.jsonl``, which the card
turns into a table (``release.card``):

    python -m ganexport.training.latent_sizes runs/vae_faces/RUN16 runs/vae_faces/RUN64 runs/vae_faces/RUN200
"""

from __future__ import annotations

import json
from pathlib import Path

import click

METRICS = ("recon_faces2k", "sharpness", "fid_faces2k")


def path_for(weights_file: Path) -> Path:
    return weights_file.with_suffix(".latent_sizes.jsonl")


def record(checkpoint_path: Path) -> dict:
    """One run's line: its latent size, steps, command and the newest record of each metric (evaluated now
    where missing)."""
    from ganexport.training import checkpoint, eval as metrics
    from ganexport.training.release import display_command

    path = checkpoint.resolve(checkpoint_path)
    meta = checkpoint.read_meta(path)
    missing = [m for m in METRICS if m not in metrics.latest(path)]
    if missing:
        metrics.evaluate(path, missing)
    latest = metrics.latest(path)
    return {"latent_dim": meta["hparams"]["latent_dim"], "step": meta["step"], "model": meta["model"],
            "command": display_command(meta["command"]), "checkpoint": f"{path.parent.name}/{path.name}",
            "wall_time_s": meta.get("wall_time_s"), "hardware": meta.get("hardware"),
            "metrics": {m: latest[m]["results"] for m in METRICS}}


def table(path: Path) -> list[str]:
    """The card's section (markdown lines), smallest latent first; none when there is no comparison file."""
    if not path.is_file():
        return []
    rows = sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()),
                  key=lambda r: (r["latent_dim"], r["step"]))
    lines = ["", "## Latent size", "",
             "The notes' first point (a bigger latent lets the encoder keep more of each face), measured: the "
             f"same recipe and steps at several latent sizes (from `{path.name}`; each run's command below the "
             "table). More kept shows as a lower reconstruction L1, more of the attributes kept and sharper "
             "reconstructions.", "",
             "| latent | steps | reconstruction L1 | attributes kept | reconstruction sharpness (of real) "
             "| sample sharpness (of real) | sample FID (judge features) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r['latent_dim']} | {r['step']} | {m['recon_faces2k']['l1']:.4f} | "
                     f"{m['recon_faces2k']['attribute_agreement']:.3f} | {m['recon_faces2k']['sharpness_ratio']:.2f} | "
                     f"{m['sharpness']['ratio_to_real']:.2f} | {m['fid_faces2k']['fid']:.2f} |")
    lines += [""] + [f"- {r['latent_dim']}-D: `{r['command']}`" for r in rows]
    return lines


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, show_default="weights/<model>.latent_sizes.jsonl",
              help="Where the lines go (replaced).")
def main(runs, out):
    """Evaluate RUNS (run folders or checkpoints of one model) and write the latent-size comparison."""
    from ganexport.released import weights_dir

    lines = [record(Path(r)) for r in runs]
    target = Path(out) if out else path_for(weights_dir() / f"{lines[0]['model']}.safetensors")
    target.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    click.echo(f"{target}: {', '.join(str(line['latent_dim']) for line in lines)}-D")


if __name__ == "__main__":
    main()
