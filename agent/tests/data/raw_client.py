"""A plain-socket HTTP client for the agent tests (unmodified Linux TCP).

usage: raw_client.py VIP MODE GO_FILE HEADER_PAD BODY_LEN
  MODE late: send the head, wait for GO_FILE, send the body, read the response
  MODE fin:  send head+body, wait for GO_FILE, shutdown(SHUT_WR), read the
             response to EOF (the FIN goes after the handoff: a FIN the switch
             acknowledged itself could not be carried by THOP)
  MODE rst:  send head+body, wait for GO_FILE, close with RST (SO_LINGER 0)
Prints the response body to stdout.
"""
import os, socket, struct, sys, time

vip, mode, go, pad, blen = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
body = bytes((i * 7 + 3) % 251 for i in range(blen))
head = ("POST /echo HTTP/1.1\r\nHost: %s\r\nX-Pad: %s\r\nContent-Length: %d\r\n\r\n" % (vip, "p" * pad, blen)).encode()

def wait_go():
    deadline = time.time() + 20
    while not os.path.exists(go):
        if time.time() > deadline:
            sys.exit("no go signal")
        time.sleep(0.01)

s = socket.create_connection((vip, 80), timeout=20)
if mode == "late":
    s.sendall(head)
    wait_go()
    s.sendall(body)
elif mode == "fin":
    s.sendall(head + body)
    wait_go()
    s.shutdown(socket.SHUT_WR)
elif mode == "rst":
    s.sendall(head + body)
    wait_go()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    sys.exit(0)
resp = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    resp += chunk
h, _, b = resp.partition(b"\r\n\r\n")
if not h.startswith(b"HTTP/1.1 200"):
    sys.exit("bad response: %r" % h[:200])
sys.stdout.buffer.write(b)
