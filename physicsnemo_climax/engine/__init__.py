# SPDX-License-Identifier: Apache-2.0
"""The training engine shared by every task, evaluation and runs."""
