from lab.cli import main
from lab.privileges import run_as_lab_user

run_as_lab_user()  # in the lab container, never as root (see lab/privileges.py)
raise SystemExit(main())
