"""Typical wrong answers to 15's exercise, and what the check must say about each."""

WRONG = {
    "15.1": [
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
""",
            "the step used this gradient plus the one left from the previous step: call "
            "optimizer.zero_grad() before backward()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.step()
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss.item()
""",
            "the step used the gradient left from the previous step: call optimizer.step() "
            "after loss.backward()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    optimizer.step()
    loss.backward()
    return loss.item()
""",
            "the parameters did not move: optimizer.step() must come after backward()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss
""",
            "train_step returned a tensor: return loss.item()",
        ),
    ],
}
