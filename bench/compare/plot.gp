# plot.gp - the comparison's charts, drawn from the .dat files that
# bench/compare/results.py writes. Called as
#   gnuplot -e "datadir='DIR'; panels='S1 S2 ...'; t_S1='title'; b_S1=1; s_S1=1; ...;
#               cdf='system ...'; out_throughput='X.png'; out_latency='Y.png'" plot.gp
# DIR/<panel>.dat: "system bench_rate source_rate" (NaN: not measured);
# b_<panel>, s_<panel>: 1 when the panel has a bench or a source value;
# DIR/S6-<system>.dat: "latency_ms nines label", nines = -log10(1 - q).
# An empty output name skips that chart.

set terminal pngcairo size 1500,900 font "sans,10" noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right

if (strlen(out_throughput) > 0) {
    set output out_throughput
    n = words(panels)
    rows = (n > 3) ? 2 : 1
    cols = (n > 3) ? 3 : n
    set multiplot layout rows, cols title "Throughput, msgs/s (median of rounds; log scale)" font "sans,13"
    set logscale y
    set yrange [10:*]
    set xtics rotate by -35 scale 0
    set format y "%.0f"
    do for [i = 1:n] {
        p = word(panels, i)
        set title value("t_".p)
        f = datadir."/".p.".dat"
        if (value("b_".p) && value("s_".p)) {
            plot f using 2:xtic(1) title "ringmx-bench" lc rgb "#1f77b4", \
                 "" using 3 title "smtp-source" lc rgb "#ff7f0e"
        } else {
            if (value("b_".p)) {
                plot f using 2:xtic(1) title "ringmx-bench" lc rgb "#1f77b4"
            } else {
                plot f using 3:xtic(1) title "smtp-source" lc rgb "#ff7f0e"
            }
        }
    }
    unset multiplot
    unset logscale y
}

if (strlen(out_latency) > 0) {
    set output out_latency
    set terminal pngcairo size 1100,700 font "sans,11" noenhanced
    set title "S6: ack latency at 50% of each system's own peak (ringmx-bench --rate)\nstaircase through the bench's p50, p90, p99, p99.9 and max (the JSON holds percentiles, not buckets)"
    set logscale x
    set xtics norotate
    set xlabel "ack latency, ms (log scale)"
    set ylabel "fraction of messages acknowledged within"
    set ytics ("50%%" 0.30103, "90%%" 1, "99%%" 2, "99.9%%" 3, "max" 4)
    set yrange [0.2:4.2]
    set grid xtics ytics
    set key top left
    set format x "%g"
    k = words(cdf)
    plot for [i = 1:k] datadir."/S6-".word(cdf, i).".dat" using 1:2 with steps lw 2 lc i title word(cdf, i), \
         for [i = 1:k] datadir."/S6-".word(cdf, i).".dat" using 1:2 with points pt 7 ps 0.8 lc i notitle
}
