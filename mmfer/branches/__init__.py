"""Branches: one interface (:class:`Branch`) for every modality and backend, and one registry."""

from mmfer.branches.base import MODALITIES, Branch, BranchOutput
from mmfer.branches.registry import backend_for, create_branch, list_branches, register_branch

__all__ = ["MODALITIES", "Branch", "BranchOutput", "backend_for", "create_branch", "list_branches",
           "register_branch"]
