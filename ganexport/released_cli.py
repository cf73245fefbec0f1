"""``ganexport weights``: which released weights this install carries, where, and their checksums.

Listed in ganexport/cli.py's COMMANDS. Reads files and hashes them, nothing more: no torch, so it
answers in a serving-only install too, and says which folder every other command will take.
"""

from __future__ import annotations

import json

import click

from ganexport import catalog
from ganexport.cli_common import UserError


@click.command("weights")
@click.option("--json", "as_json", is_flag=True, help="One JSON document with absolute paths, for scripts.")
def weights(as_json):
    """List the released weights: model, file, size, sha256, model card, and the folder they were found in.

    \b
    Examples:
      ganexport weights
      ganexport weights --json
      GANEXPORT_WEIGHTS=~/my-weights ganexport weights    # what every command would take from there
    """
    from ganexport import released

    try:
        directory = released.weights_dir()
        found, how = released.listing(directory), released.where(directory)
    except (released.ReleasedError, OSError) as e:
        raise UserError(str(e)) from None
    missing = [m for m in catalog.MODELS if m not in {f.name for f in found}]
    if not found and not as_json:
        raise UserError(f"no released weights in {directory} ({how}); ganexport build stops unless given "
                        f"--checkpoint, a run in runs/ or --train-if-missing")
    if as_json:
        click.echo(json.dumps({
            "directory": str(directory), "found_as": how, "missing": missing,
            "weights": [{"name": f.name, "path": str(f.path), "size": f.size, "sha256": f.sha256,
                         "card": str(f.card) if f.card else None} for f in found]}, indent=2))
    else:
        click.echo(f"released weights in {directory} ({how})")
        width = max([len(f.name) for f in found] + [len("model")])
        file_width = max([len(f.path.name) for f in found] + [len("file")])
        click.echo(f"{'model':{width}}  {'file':{file_width}}  {'size':>9}  {'sha256':64}  card")
        for f in found:
            click.echo(f"{f.name:{width}}  {f.path.name:{file_width}}  {f.size / 1e6:6.2f} MB  {f.sha256}  "
                       f"{f.card.name if f.card else '-'}")
        if missing:
            click.echo(f"no released weights for: {', '.join(missing)} (ganexport build stops for them unless "
                       f"given --checkpoint, a run in runs/ or --train-if-missing)")
    if not found:
        click.get_current_context().exit(UserError.exit_code)
