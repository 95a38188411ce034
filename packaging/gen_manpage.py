"""Write railwatch.1 (groff man page) from the click CLI's own help, so it cannot drift.

    python3 packaging/gen_manpage.py [OUTPUT]      # default ./railwatch.1 (not kept in git:
                                                   # packaging/deb/build.sh generates it into the .deb)

One section per command (and per subcommand of a group), with its help text and options.
"""
from __future__ import annotations

import datetime
import os
import sys
from typing import List

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent import __version__  # noqa: E402
from agent.cli import cli  # noqa: E402


def esc(text: str) -> str:
    """groff-safe: backslashes, and a leading dot or quote would be read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line if line[:1] in (".", "'") else line) for line in text.splitlines())


def commands(group: click.Group, prefix: str) -> List[tuple]:
    out = []
    ctx = click.Context(group, info_name=prefix)
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out += commands(cmd, f"{prefix} {name}")
    return out


def section(path: str, cmd: click.Command) -> List[str]:
    ctx = click.Context(cmd, info_name=path)
    lines = [f".SS {esc(path)}", f".B {esc(' '.join([path] + cmd.collect_usage_pieces(ctx)))}", ".PP"]
    help_text = (cmd.help or cmd.short_help or "").replace("\b\n", "").replace("\b", "")
    lines.append(esc(help_text.strip()) or "")
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option):
            continue  # arguments are in the usage line
        record = param.get_help_record(ctx)
        if record is None:
            continue
        flags, text = record
        lines += [".TP", f".B {esc(flags)}", esc(text)]
    return lines


def render() -> str:
    today = datetime.date.today().isoformat()
    ctx = click.Context(cli, info_name="railwatch")
    out = [
        f'.TH RAILWATCH 1 "{today}" "railwatch {__version__}" "User Commands"',
        ".SH NAME",
        "railwatch \\- find connection-pool exhaustion, N+1 spikes and Sidekiq failure storms in a Rails app's logs",
        ".SH SYNOPSIS",
        ".B railwatch",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
        esc((cli.help or "").strip()) or "railwatch",
        ".SH COMMANDS",
    ]
    for path, cmd in commands(cli, "railwatch"):
        out += section(path, cmd)
    out += [
        ".SH SHELL COMPLETION",
        "bash: \\fBeval \"$(_RAILWATCH_COMPLETE=bash_source railwatch)\"\\fR in ~/.bashrc;",
        "zsh: \\fB_RAILWATCH_COMPLETE=zsh_source\\fR; fish: \\fB_RAILWATCH_COMPLETE=fish_source railwatch | source\\fR.",
        ".SH FILES",
        ".TP", "/etc/railwatch/railwatch.toml", "the daemon's configuration",
        ".TP", "/var/lib/railwatch", "incident store, tail positions, bundles",
        ".SH SEE ALSO",
        "/usr/share/doc/railwatch/README.md, \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1)",
    ]
    del ctx
    return "\n".join(out) + "\n"


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "railwatch.1"
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(render())
    print(target)


if __name__ == "__main__":
    main()
