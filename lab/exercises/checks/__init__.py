"""One module per lesson, ``exNN``, with ``CHECKS = {"NN.K": check}``: a check takes the
learner's answer, raises Problem for the first thing wrong, and returns what it verified."""
