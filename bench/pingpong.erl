%% pingpong.erl - the Erlang baseline of bench/run: round trips of a
%% message between processes on two distributed Erlang nodes on this host
%% (the way actor users compare messaging), one at a time and with 100 in
%% flight, for 64 B and 4 KB binaries. Prints one JSON object.
-module(pingpong).
-export([pong/0, run/1]).

pong() ->
    register(pong, self()),
    pong_loop().

pong_loop() ->
    receive
        {From, Msg} -> From ! {pong, Msg}, pong_loop();
        stop -> ok
    end.

run([PongNode, NStr]) ->
    N = list_to_integer(atom_to_list(NStr)),
    Target = {pong, PongNode},
    true = net_kernel:connect_node(PongNode),
    wait_registered(PongNode, 100),
    Results = [size_result(Target, Size, N) || Size <- [64, 4096]],
    io:format("{\"transport\": \"erlang_distribution\", \"round_trips\": ~p, \"inflight\": 100, "
              "\"sizes\": {~s}, \"ok\": true}~n", [N, string:join(Results, ", ")]),
    Target ! stop,
    init:stop().

wait_registered(_Node, 0) -> erlang:error(pong_not_registered);
wait_registered(Node, K) ->
    case rpc:call(Node, erlang, whereis, [pong]) of
        P when is_pid(P) -> ok;
        _ -> timer:sleep(50), wait_registered(Node, K - 1)
    end.

size_result(Target, Size, N) ->
    Bin = binary:copy(<<"x">>, Size),
    _ = one_at_a_time(Target, Bin, N div 10 + 1),
    Lat = lists:sort(one_at_a_time(Target, Bin, N)),
    P50 = lists:nth(N div 2 + 1, Lat),
    P99 = lists:nth((N * 99) div 100 + 1, Lat),
    Rate = inflight(Target, Bin, N * 5, 100),
    io_lib:format("\"~p\": {\"rt_p50_us\": ~.1f, \"rt_p99_us\": ~.1f, \"rt_per_sec\": ~b}",
                  [Size, P50, P99, round(Rate)]).

one_at_a_time(Target, Bin, N) ->
    [begin
         T0 = erlang:monotonic_time(nanosecond),
         Target ! {self(), Bin},
         receive {pong, _} -> ok end,
         (erlang:monotonic_time(nanosecond) - T0) / 1000
     end || _ <- lists:seq(1, N)].

inflight(Target, Bin, N, W) ->
    T0 = erlang:monotonic_time(nanosecond),
    [Target ! {self(), Bin} || _ <- lists:seq(1, min(W, N))],
    loop(Target, Bin, N, min(W, N), 0),
    N / ((erlang:monotonic_time(nanosecond) - T0) / 1.0e9).

loop(_Target, _Bin, N, _Sent, N) -> ok;
loop(Target, Bin, N, Sent, Done) ->
    receive {pong, _} -> ok end,
    Sent2 = case Sent < N of
                true -> Target ! {self(), Bin}, Sent + 1;
                false -> Sent
            end,
    loop(Target, Bin, N, Sent2, Done + 1).
