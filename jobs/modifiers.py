"""Ray job entry point: same as `cogumi modifiers`."""

from _entry import run_command

if __name__ == "__main__":
    run_command("modifiers")
