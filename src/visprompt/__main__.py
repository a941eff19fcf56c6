"""`python -m visprompt` runs the Kedro project like `kedro run`."""

from kedro.framework.cli.utils import find_run_command

if __name__ == "__main__":
    find_run_command("visprompt")(standalone_mode=True)
