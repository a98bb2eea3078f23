"""The lesson engine: the harness every lesson's cells call (``harness``), the headless runner
(``runner``), ``lab lesson`` (``cli``), the data lessons' image helpers (``imaging``) and lesson
16's DDP worker (``ddp``). The lessons themselves are the course, in ``lab/course/``."""
