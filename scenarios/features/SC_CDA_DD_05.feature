# language: fr
@exigence=SC.CDA/DD.05 @exigence=SC.CDA/VISU.02 @exigence=SC.CDA/INT.18 @exigence=SC.DMP/UX.31 @exigence=SC.DMP/CONF.14
Fonctionnalité: SC.CDA/DD.05, VISU.02, INT.18, SC.DMP/UX.31, CONF.14 — Versions et doublons des documents du DMP
  Le médecin intègre plusieurs documents du DMP en une sélection. Un autre poste en remplace un (nouvelle version,
  même setId, relatedDocument RPLC) : le dossier avertit sans clic qu'une version plus récente existe et mène à
  la liste du DMP, où la dernière version s'intègre une fois. Une copie déposée par un autre logiciel (autre
  identifiant, même setId et même version) n'est jamais intégrée en double (balises id, setId, versionNumber).
  Supprimée du DMP, la version intégrée est signalée comme telle. Chaque document lu dans le DMP l'est par un
  accès tracé (qui, quand, quel document), que le LGC exporte (CSV).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée

  Scénario: Un autre poste remplace puis supprime un document déjà intégré
    Quand le médecin intègre au dossier, en une seule sélection, les documents "Compte rendu de consultation de cardiologie" et "Compte rendu d'examens biologiques" du DMP
    Alors "Compte rendu de consultation de cardiologie" et "Compte rendu d'examens biologiques" sont récupérés une fois chacun et marqués « importé du DMP » dans le dossier
    Quand un autre poste remplace au DMP le document "Compte rendu d'examens biologiques" par une nouvelle version
    Alors après actualisation, le dossier avertit qu'une version plus récente de "Compte rendu d'examens biologiques" existe dans le DMP
    Quand le médecin intègre la dernière version de "Compte rendu d'examens biologiques" depuis la liste du DMP
    Alors la nouvelle version de "Compte rendu d'examens biologiques" est récupérée une seule fois et le dossier tient les deux versions
    Quand un autre logiciel dépose au DMP une copie de la dernière version de "Compte rendu d'examens biologiques"
    Et le médecin intègre la copie de "Compte rendu d'examens biologiques" depuis la liste du DMP
    Alors le LGC n'intègre pas ce doublon de "Compte rendu d'examens biologiques" et le dit
    Quand un autre poste supprime du DMP la dernière version de "Compte rendu d'examens biologiques"
    Alors après actualisation, le dossier avertit que la version 2 de "Compte rendu d'examens biologiques" a été supprimée du DMP
    Et chaque document lu dans le DMP l'a été par un accès tracé, que le LGC exporte
