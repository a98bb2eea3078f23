"""What a teacher should look at in a learner's copy: code that reaches into the checker or
the grader instead of answering the exercise.

A check runs the learner's code in its own process, so that code could, in principle, read
the check's expected values from its frames, patch the comparison, write a verdict into the
grader's pipe, or import the reference solutions. :func:`suspicious` reads the copy's code
cells (the ones the notebook and ``lab check`` run; no code runs here) and says, line by line
and plainly, every use of what an exercise never needs for that: the lab's internals other
than ``check_exercise``/``hint``, ``lab.course`` (checks, solutions), ``sys.modules``,
``gc``, frames (``inspect``, ``sys._getframe``, ``f_back``…), ``builtins``, ``os._exit``
and file descriptors, the environment (where the grader's seed is), other programs, code
built from strings, files outside the copy's folder, and a library's attribute replaced
(``torch.isclose = …``). It is a reason to look, never a verdict: ``lab grade`` reports it
beside the verdicts and changes none of them. Stdlib only.
"""

from __future__ import annotations

import ast

ALLOWED_FROM_LAB = {"lab.exercises.check_exercise", "lab.exercises.hint"}

MODULES = {  # a module imported at all: why a teacher should look
    "gc": "can find the checker's objects in memory",
    "inspect": "can read the checker's frames and variables",
    "ctypes": "can change any memory of the process",
    "importlib": "imports modules by computed names",
    "builtins": "can replace Python's own functions",
    "signal": "handles the signals that stop a check",
    "subprocess": "runs other programs",
    "socket": "opens network connections",
    "urllib": "opens network connections",
    "http": "opens network connections",
    "requests": "opens network connections",
    "multiprocessing": "starts other processes",
    "pickle": "can run code hidden in data",
    "marshal": "loads compiled code",
}
ATTRIBUTES = {  # os.X / sys.X, whatever name os or sys was imported under
    "sys.modules": "can reach every module loaded, the checker's too",
    "sys._getframe": "reads the checker's frames and variables",
    "sys._current_frames": "reads the checker's frames and variables",
    "sys.settrace": "traces the checker's code",
    "sys.setprofile": "traces the checker's code",
    "sys.addaudithook": "hooks the interpreter",
    "os._exit": "ends the check's process before a verdict",
    "os.abort": "ends the check's process before a verdict",
    "os.kill": "signals processes, the grader's too",
    "os.killpg": "signals processes, the grader's too",
    "os.write": "writes to file descriptors (the grader reads its verdict from one)",
    "os.dup2": "rewires file descriptors (the grader reads its verdict from one)",
    "os.fdopen": "opens file descriptors (the grader reads its verdict from one)",
    "os.environ": "reads the environment (where the grader's seed is)",
    "os.getenv": "reads the environment (where the grader's seed is)",
    "os.environb": "reads the environment (where the grader's seed is)",
    "os.system": "runs other programs",
    "os.popen": "runs other programs",
    "os.fork": "starts other processes",
}
FRAME_ATTRIBUTES = {
    "f_back",
    "f_locals",
    "f_globals",
    "f_builtins",
    "tb_frame",
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "__globals__",
    "__closure__",
    "__code__",
    "__subclasses__",
}
FROM_STRINGS = {"exec", "eval", "compile", "__import__"}
OPENERS = {"open", "io.open", "os.open", "pathlib.Path", "os.listdir", "os.scandir", "os.walk"}
OPENERS |= {"glob.glob", "glob.iglob", "shutil.copy", "shutil.copyfile", "os.path.expanduser"}
MENTIONS = ("solutions.py", "checks.py", "lab/course", "/proc/", "LAB_GRADE_SEED")


def suspicious(text: str) -> list[str]:
    """Each reason to look at the copy ``text``, as "line N: …", in line order."""
    from lab.lessons.runner import cells

    scan = _Scan()  # one namespace for all cells, as in the notebook
    for cell in cells(text):
        if cell.kind != "code":
            continue
        try:
            tree = ast.parse("\n" * (cell.first_line - 1) + cell.source)
        except SyntaxError:
            continue  # a cell that does not parse cannot run either
        scan.visit(tree)
    return [f"line {line}: {reason}" for line, reason in sorted(scan.found)]


class _Scan(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: set[tuple[int, str]] = set()
        self.imported: dict[str, str] = {}  # local name -> the dotted name it stands for

    def say(self, node: ast.AST, reason: str) -> None:
        self.found.add((node.lineno, reason))

    # --- what a name stands for ---------------------------------------------------------------

    def dotted(self, node: ast.AST) -> str | None:
        """``checking.evaluate`` → ``lab.exercises.checking.evaluate`` when ``checking`` was
        imported from there; None when the chain does not start at an import."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.imported:
            return None
        return ".".join([self.imported[node.id], *reversed(parts)])

    def module_used(self, node: ast.AST, name: str) -> None:
        if name.startswith("lab.") or name == "lab":
            self.lab(node, name)
        top = name.split(".")[0]
        if top in MODULES:
            self.say(node, f"uses {top}, which {MODULES[top]}")
        for attribute, reason in ATTRIBUTES.items():
            if name == attribute or name.startswith(attribute + "."):
                self.say(node, f"uses {attribute}, which {reason}")

    def lab(self, node: ast.AST, name: str) -> None:
        if name in ("lab", "lab.exercises") or name in ALLOWED_FROM_LAB:
            return
        if name.startswith("lab.course"):
            self.say(node, f"uses {name}: the course's checks and reference solutions")
        elif name.startswith("lab.exercises."):
            self.say(node, f"uses {name}: the checker's internals")
        else:
            self.say(node, f"uses {name}: the lab's own engine, which no exercise needs")

    # --- imports --------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.imported[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.imported[top] = top
            self.module_used(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # a relative import: nothing of the learner's to be relative to
            self.say(node, "uses a relative import")
            return
        for alias in node.names:
            name = f"{node.module}.{alias.name}"
            self.imported[alias.asname or alias.name] = name
            self.module_used(node, name)
            if alias.name == "*":
                self.module_used(node, node.module or "")

    # --- names and attributes -------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.dotted(node)
        if name is None:
            self.internals(node)
            self.generic_visit(node)
            return
        # a chain of names from an import: said once, from its outermost attribute
        self.module_used(node, name)
        if node.attr == "__dict__":
            self.say(node, f"reaches into {name.removesuffix('.__dict__')}.__dict__")
        while isinstance(node, ast.Attribute):
            self.internals(node)
            node = node.value

    def internals(self, node: ast.Attribute) -> None:
        if node.attr in FRAME_ATTRIBUTES:
            self.say(node, f"uses .{node.attr}: the interpreter's frames or a function's insides")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self.say(node, "uses __builtins__, which can replace Python's own functions")
        elif node.id in FROM_STRINGS and node.id not in self.imported:
            self.say(node, f"uses {node.id}(), which runs code built from strings")

    def visit_Call(self, node: ast.Call) -> None:
        callee = node.func.id if isinstance(node.func, ast.Name) else None
        name = self.dotted(node.func) or callee
        if name in ("setattr", "delattr", "vars") and node.args:
            target = self.dotted(node.args[0])
            if target is not None:
                self.say(node, f"{name}() on {target}: changes or reads a library's insides")
        if name in OPENERS or callee == "Path":
            for argument in node.args[:1]:
                if _outside(argument):
                    self.say(node, f"opens {_text(argument)!r}, outside its own folder")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for mention in MENTIONS:
                if mention in node.value:
                    self.say(node, f"mentions {mention!r}")

    # --- replacing a library's attribute ---------------------------------------------------------

    def replaced(self, target: ast.AST) -> None:
        """Say a library's attribute (or item) assigned or deleted; look into anything else."""
        if isinstance(target, ast.Tuple | ast.List):
            for each in target.elts:
                self.replaced(each)
        elif isinstance(target, ast.Attribute | ast.Subscript) and self.from_import(target):
            name = self.dotted(target) or ast.unparse(target)
            self.say(target, f"replaces {name}: patches what the checks rely on")
        else:
            self.visit(target)

    def from_import(self, node: ast.AST) -> bool:
        """Does ``node`` (``a.b[c].d()``…) start from a name an import made?"""
        while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id in self.imported

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.replaced(target)
        name = self.dotted(node.value)
        for target in node.targets:  # an alias: `F = torch.nn.functional`
            if name is not None and isinstance(target, ast.Name):
                self.imported[target.id] = name

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self.replaced(node.target)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.replaced(target)


def _text(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            _text(each) if isinstance(each, ast.Constant) else "…" for each in node.values
        )
    return "…"


def _outside(node: ast.AST) -> bool:
    """A path written into the code that leaves the copy's folder: absolute, from home, or up."""
    text = _text(node)
    if text == "…":
        return False
    return text.startswith(("/", "~", "\\")) or ".." in text.replace("\\", "/").split("/")
