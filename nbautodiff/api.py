"""Public API (work in progress: the engine lands in this file's next commit)."""
def grad(fun, argnums=0): raise NotImplementedError
def value_and_grad(fun, argnums=0): raise NotImplementedError
def vjp(fun, *primals): raise NotImplementedError
def reverse(fun, *activities, ret="Active"): raise NotImplementedError
