set terminal svg size 1100,800 dynamic enhanced font 'sans,11' background rgb 'white'
set output 'chart.svg'
set datafile separator '\t'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set xtics nomirror
set logscale y
set multiplot layout 2,1 title 'ringway vs nginx vs HAProxy (medians; log scale)'
set title 'throughput (req/s, higher is better)'
set yrange [100:*]
plot 'chart.dat' index 0 using 2:xtic(1) title columnheader(2), \
     'chart.dat' index 0 using 3 title columnheader(3)
set title 'p99 latency (ms, lower is better)'
set yrange [0.1:*]
plot 'chart.dat' index 1 using 2:xtic(1) title columnheader(2), \
     'chart.dat' index 1 using 3 title columnheader(3)
unset multiplot
