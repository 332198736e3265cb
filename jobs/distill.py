"""Ray job entry point: same as `cogumi distill`."""

from _entry import run_command

if __name__ == "__main__":
    run_command("distill")
