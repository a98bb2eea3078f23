"""Reference solutions, one module per lesson (``exNN``), named like the stubs. Printed by
``lab exercise NN --solution``; the tests check that each passes its check. The checks never
compare against these: they use autograd on built-in ops, gradcheck and closed forms."""
