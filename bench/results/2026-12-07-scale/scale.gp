set terminal pngcairo size 1200,800 font ",10"
set output "scale.png"
set multiplot layout 2,2
set logscale x
set grid
set key left top
set xlabel "message size (KiB)"
set ylabel "msgs/s"
set logscale y
plot "scale.dat" index 0 using 1:2 with linespoints title "1 worker", \
     "" index 1 using 1:2 with linespoints title "2 workers"
set ylabel "server CPU us/msg"
plot "scale.dat" index 0 using 1:3 with linespoints title "1 worker", \
     "" index 1 using 1:3 with linespoints title "2 workers"
unset logscale y
set yrange [0:*]
set key right bottom
set xlabel "open connections (100 active)"
set ylabel "msgs/s"
plot "scale.dat" index 2 using 1:2 with linespoints title "1 worker", \
     "" index 3 using 1:2 with linespoints title "2 workers"
set ylabel "server CPU us/msg"
plot "scale.dat" index 2 using 1:3 with linespoints title "1 worker", \
     "" index 3 using 1:3 with linespoints title "2 workers"
unset multiplot
