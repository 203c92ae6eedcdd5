# The interrupt-path microbenchmark through kmod_ipi (a functional check under TCG: the numbers
# say nothing about hardware). Its JSON and CSV are copied out through the console.
insmod /modules/kmod_ipi.ko
synergy microbench --preempt ipi --runs 20000 --json /tmp/microbench-ipi.json --csv /tmp/microbench-ipi.csv --svg /tmp/microbench-ipi.svg
for f in microbench-ipi.json microbench-ipi.csv microbench-ipi.svg; do
  echo "SYNERGY-FILE-BEGIN $f"
  cat "/tmp/$f"
  echo "SYNERGY-FILE-END $f"
done
rmmod kmod_ipi
