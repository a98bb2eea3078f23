def graph_ops(t):
    names, todo, seen = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:  # None: an input that needs no gradient
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(child for child, _ in node.next_functions)
    return names


def stop_gradient_mse(pred, target):
    return ((pred - target.detach()) ** 2).mean()
