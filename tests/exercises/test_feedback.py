"""The checks' vocabulary: tolerances that follow the learner's dtype, a ratio said only where
it means something, what the learner's code called, whose stub a NotImplementedError is."""

from __future__ import annotations

import pytest
import torch

from lab.exercises.feedback import (
    BACKWARD,
    OPTIMIZER_STEP,
    ZERO_GRAD,
    NotAttempted,
    Problem,
    call,
    checking,
    same,
    watch,
)

F64 = torch.float64


def message(expected, got, **kwargs) -> str:
    with pytest.raises(Problem) as problem:
        same(expected, got, "the value", **kwargs)
    return problem.value.message


def test_float32_answers_are_compared_at_float32_precision():
    expected = torch.tensor([1 / 3, 2 / 3, 1e-7], dtype=F64)
    same(expected, expected.float(), "the value")  # float32 rounding: right
    assert "differs at index 0" in message(expected, expected + 1e-5)  # float64: that is wrong
    assert "differs" in message(expected, (expected * 1.01).float())


def test_a_ratio_is_said_only_where_it_means_something():
    expected = torch.tensor(2.0, dtype=F64)
    assert message(expected, torch.tensor(63.0, dtype=F64)).endswith("(expected 2, got 63)")
    assert message(expected, torch.tensor(4.0, dtype=F64)).endswith("it is 2× the right value")
    assert message(expected, torch.tensor(-2.0, dtype=F64)).endswith(": the sign is flipped")
    vector = torch.tensor([1.0, -2.0, 4.0], dtype=F64)
    assert message(vector, vector * 1.37).endswith("it is 1.37× the right value")
    assert "×" not in message(vector, vector + 1)


def test_watch_records_what_the_learners_code_called_in_order():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        model(torch.ones(1, 2)).sum().backward()
        optimizer.zero_grad()
        optimizer.step()

    with watch(*ZERO_GRAD) as seen:
        call(step, who="step")
    order = seen.order(backward=BACKWARD, zero_grad=ZERO_GRAD, step=OPTIMIZER_STEP)
    assert order == ["backward", "zero_grad", "step"]
    assert seen.count(BACKWARD) == 1


def test_a_notimplementederror_says_whose_stub_it_is():
    def stub(*_):
        raise NotImplementedError("01.1: return (dL/dw, dL/db)")

    def descent_step():
        return stub()

    with checking("01.2"), pytest.raises(Problem) as problem:
        call(descent_step, who="descent_step")
    assert "calls `manual_gradients` of exercise 01.1, which is not written yet" in (
        problem.value.message
    )
    with checking("01.1"), pytest.raises(NotAttempted):
        call(stub, who="manual_gradients")

    class Data(torch.utils.data.Dataset):
        def __get_item__(self, index):
            return index

    with checking("09.1"), pytest.raises(Problem) as problem:
        call(Data().__getitem__, 0, who="dataset[0]")
    assert "is it spelt exactly `__getitem__`?" in problem.value.message


def test_sys_exit_in_the_learners_code_is_a_sentence():
    def leave():
        raise SystemExit(3)

    with pytest.raises(Problem, match=r"leave called sys.exit\(3\)"):
        call(leave, who="leave")
