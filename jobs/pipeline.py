"""Ray job entry point: same as `cogumi pipeline`."""

from _entry import run_command

if __name__ == "__main__":
    run_command("pipeline")
