"""Entry point of one DisaggregatedRuntime rank: `python -m avatar_engine.runtime.rank_main
ADDRESS RANK`, started by the runtime, never by hand.

The rank connects back to the runtime, receives the engine spec and the layout, joins the
process group and runs its part. Any error goes back to the runtime with its traceback, and
the rank exits; if the runtime's process dies, the rank exits too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from datetime import timedelta
from multiprocessing.connection import Client

import torch
import torch.distributed as dist

from avatar_engine.runtime.protocol import AUTHKEY_ENV, Hello, Init, RankFailed, receive, send
from avatar_engine.runtime.ranks import DecoderRank, DitRank

# The runtime watches the ranks and kills them on any failure, so collectives never need to
# time out on their own (a decoder may wait hours between sessions).
COLLECTIVE_TIMEOUT = timedelta(days=7)
PARENT_CHECK_S = 1.0


def _exit_with_parent() -> None:
    parent = os.getppid()
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def rank_main(address: str, rank: int) -> None:
    conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(os.environ[AUTHKEY_ENV]))
    send(conn, Hello(rank))
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        init = receive(conn)
        assert isinstance(init, Init)
        spec, settings = init.spec, init.settings
        device = torch.device(settings.devices[rank])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dit = rank < settings.dit_ranks
        torch.set_num_threads(settings.dit_threads if dit else settings.decoder_threads)
        dist.init_process_group(
            settings.backend,
            store=dist.FileStore(settings.store, settings.world_size),
            rank=rank,
            world_size=settings.world_size,
            timeout=COLLECTIVE_TIMEOUT,
        )
        group = dist.new_group(list(range(settings.dit_ranks)))
        if dit:
            DitRank(conn, spec, settings, rank, group).run()
        else:
            DecoderRank(conn, spec, settings, rank).run()
        dist.destroy_process_group()
    except BaseException:
        send(conn, RankFailed(rank, traceback.format_exc()))
        conn.close()
        os._exit(1)
    conn.close()


if __name__ == "__main__":
    rank_main(sys.argv[1], int(sys.argv[2]))
