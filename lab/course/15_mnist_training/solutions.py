def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()  # the previous step's gradient must not add into this one
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
