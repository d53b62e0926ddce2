"""Tools: typed callables that castflow runs on pooled leaf workers.

Declare a tool with ``@tool`` (sync or async function), ``tool(obj)`` (any object with a
``__call__``) or by subclassing ``ToolBase``. Its input model comes from the signature, its
description from the docstring, and ``Tool.json_schema()`` gives the function-calling schema
LLM APIs take. Run one with ``ActorSystem.call(tool, input, timeout=...)``; inside workflows
tools are steps like any other.

A tool that wants its cancel scope, deadline, shared resources or a progress channel asks for
them with a parameter annotated ``ToolContext``.
"""

from __future__ import annotations

from actors._tooldef import (
    MISSING,
    TOOL_NAME_PATTERN,
    FieldError,
    ProgressReport,
    Tool,
    ToolBase,
    ToolContext,
    ToolDefinitionError,
    ToolInputError,
    ToolOutputError,
    ToolTask,
    as_tool,
    tool,
)
from actors.runtime.leaves import LeafWorker

__all__ = [
    "MISSING",
    "TOOL_NAME_PATTERN",
    "FieldError",
    "ProgressReport",
    "Tool",
    "ToolActor",
    "ToolBase",
    "ToolContext",
    "ToolDefinitionError",
    "ToolInputError",
    "ToolOutputError",
    "ToolTask",
    "as_tool",
    "tool",
]

ToolActor = LeafWorker
"""The pooled actor that runs sync tools: one thread each, reused across calls.

Async tools do not occupy a ToolActor: they run on the system's asyncio loop.
"""
