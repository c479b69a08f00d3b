"""The settings every CPU engine of the project gets (facade, verifier, server)."""

import os

from fireredasr_vllm.cpu_backend import (KV_CACHE_SPACE, THREADS_BIND, cpu_environment, cpu_server_flags,
                                         cpu_thread_binding)


def test_cpu_thread_binding_gives_each_worker_its_own_cores():
    cores = sorted(os.sched_getaffinity(0))  # 2 or more on any machine that runs two engines
    groups = [set(group.split(",")) for group in cpu_thread_binding(2).split("|")]
    assert len(groups) == 2 and not groups[0] & groups[1] and groups[0] | groups[1] <= set(map(str, cores))
    assert cpu_thread_binding(1) == ",".join(map(str, cores))


def test_cpu_environment_adds_only_what_the_user_did_not_set():
    assert cpu_environment(1, 3, environ={}) == {KV_CACHE_SPACE: "3"}  # one worker: vLLM binds it
    assert cpu_environment(2, environ={})[THREADS_BIND] == cpu_thread_binding(2)
    assert cpu_environment(2, environ={KV_CACHE_SPACE: "8", THREADS_BIND: "0|1"}) == {}


def test_cpu_server_flags_leave_the_users_choice():
    assert cpu_server_flags([]) == ["--enforce-eager", "--no-enable-chunked-prefill"]
    assert cpu_server_flags(["--no-enforce-eager", "--port", "9"]) == ["--no-enable-chunked-prefill"]
